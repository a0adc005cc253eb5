"""pydantic-ai-harness `StepStore` on every backend: the harness's store behaviours, ported
(register/list runs, events, snapshots, retention, tool-effect ledger, idempotent replays),
plus what encryption adds (nothing stored in clear, moved records refused) and a real
agent run interrupted and resumed through the harness's `StepPersistence`.

Runs in its own environment (pydantic-ai 2.x cannot share one with pydantic-graph 1.x):
see .ci/run and tests/adapters/conftest.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai_harness.step_persistence import (
    ContinuableSnapshot,
    RunRecord,
    StepEvent,
    StepPersistence,
    ToolEffectRecord,
    continue_run,
)
from pydantic_ai_harness.step_persistence import StepStore as StepStoreProtocol

from checkpointers import ConfigurationError, EncryptedStore, IntegrityError, Query, Store
from checkpointers.pydantic_ai import KINDS, RUN_KIND, SNAPSHOT_KIND, RunExistsError, StepStore
from checkpointers.testing import deterministic_key_ring

MARKER = "MARKER-7f3a91c2"


@pytest.fixture
async def encrypted(any_store: Store) -> AsyncIterator[EncryptedStore]:
    async with EncryptedStore(any_store, deterministic_key_ring()) as store:
        yield store


@pytest.fixture
def steps(encrypted: EncryptedStore) -> StepStore:
    return StepStore(encrypted)


def _messages(text: str = "hello") -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=text)])]


def _at(minute: int) -> datetime:
    return datetime(2026, 1, 1, 12, minute, tzinfo=timezone.utc)


def _snap(run_id: str, step: int, state: Any = "complete", key: str | None = None) -> ContinuableSnapshot:
    return ContinuableSnapshot(run_id=run_id, step_index=step, messages=_messages(f"s{step}"),
                               state=state, idempotency_key=key)  # fmt: skip


# -- protocol and runs ----------------------------------------------------------------------


def test_satisfies_the_harness_protocol(steps: StepStore) -> None:
    """StepStore is a runtime-checkable harness `StepStore`."""
    assert isinstance(steps, StepStoreProtocol)


async def test_register_and_get_run_round_trips(steps: StepStore) -> None:
    """Every RunRecord field comes back, metadata in any script, timestamps as instants."""
    record = RunRecord(run_id="r1", conversation_id="c1", parent_run_id="p1", agent_name="a",
                       metadata={"ключ": "значение", "emoji": "🚀"}, started_at=_at(3),
                       registration_id="reg-1")  # fmt: skip
    await steps.register_run(record)
    assert await steps.get_run(run_id="r1") == record


async def test_register_duplicate_run_raises_value_error(steps: StepStore) -> None:
    """A run id is single-shot: the second registration raises (a ValueError, as upstream)."""
    await steps.register_run(RunRecord(run_id="r1"))
    with pytest.raises(ValueError, match="already registered") as info:
        await steps.register_run(RunRecord(run_id="r1"))
    assert isinstance(info.value, RunExistsError)


async def test_missing_lookups_are_none_or_empty(steps: StepStore) -> None:
    """Reads of what was never written return None or []."""
    assert await steps.get_run(run_id="nope") is None
    assert await steps.list_events(run_id="nope") == []
    assert await steps.latest_snapshot(run_id="nope") is None
    assert await steps.list_snapshots(run_id="nope") == []
    assert await steps.get_tool_effect(run_id="nope", tool_call_id="t1") is None
    assert await steps.list_unresolved_tool_effects(run_id="nope") == []
    assert await steps.list_runs() == []


async def test_list_runs_is_chronological_by_instant(steps: StepStore) -> None:
    """Runs come back by started_at as an instant, not in write or ISO-string order."""
    await steps.register_run(RunRecord(run_id="b", started_at=_at(2)))
    await steps.register_run(RunRecord(run_id="a", started_at=_at(1)))
    await steps.register_run(RunRecord(run_id="c", started_at=_at(3)))
    earlier = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))  # 10:00Z
    await steps.register_run(RunRecord(run_id="z", started_at=earlier))
    assert [r.run_id for r in await steps.list_runs()] == ["z", "a", "b", "c"]


async def test_list_runs_filters_combine(steps: StepStore) -> None:
    """parent_run_id and conversation_id filter alone and AND-combined."""
    await steps.register_run(RunRecord(run_id="r1", conversation_id="c1", parent_run_id="p1", started_at=_at(1)))
    await steps.register_run(RunRecord(run_id="r2", conversation_id="c2", parent_run_id="p1", started_at=_at(2)))
    await steps.register_run(RunRecord(run_id="r3", conversation_id="c1", started_at=_at(3)))
    assert [r.run_id for r in await steps.list_runs(parent_run_id="p1")] == ["r1", "r2"]
    assert [r.run_id for r in await steps.list_runs(conversation_id="c1")] == ["r1", "r3"]
    both = await steps.list_runs(parent_run_id="p1", conversation_id="c2")
    assert [r.run_id for r in both] == ["r2"]
    assert await steps.list_runs(conversation_id="none") == []


# -- events -------------------------------------------------------------------------------


async def test_events_keep_append_order_per_run(steps: StepStore) -> None:
    """Events list in append order, scoped to their run, every field kept."""
    first = StepEvent(run_id="r1", kind="run_started", step_index=0, metadata={"k": "v"})
    second = StepEvent(run_id="r1", kind="tool_call_failed", step_index=1, tool_name="search",
                       tool_call_id="t1", error="boom", conversation_id="c", agent_name="a")  # fmt: skip
    await steps.append_event(first)
    await steps.append_event(second)
    await steps.append_event(StepEvent(run_id="r2", kind="run_started", step_index=0))
    for step in range(2, 6):
        await steps.append_event(StepEvent(run_id="r1", kind="model_request_started", step_index=step))
    events = await steps.list_events(run_id="r1")
    assert events[:2] == [first, second]
    assert [e.step_index for e in events] == [0, 1, 2, 3, 4, 5]


async def test_keyed_event_replay_is_dropped(steps: StepStore) -> None:
    """An event appended again with the same idempotency key is stored once."""
    event = StepEvent(run_id="r1", kind="run_started", step_index=0, idempotency_key="0:0:run_started:")
    await steps.append_event(event)
    await steps.append_event(event)
    await steps.append_event(dataclasses.replace(event, run_id="r2"))
    assert await steps.list_events(run_id="r1") == [event]
    assert len(await steps.list_events(run_id="r2")) == 1


# -- snapshots -----------------------------------------------------------------------------


async def test_snapshot_round_trips(steps: StepStore) -> None:
    """A saved snapshot comes back whole, messages included."""
    snap = ContinuableSnapshot(run_id="r1", step_index=3, messages=_messages("a"),
                               conversation_id="c1", agent_name="x", timestamp=_at(4))  # fmt: skip
    await steps.save_snapshot(snap)
    assert await steps.latest_snapshot(run_id="r1") == snap


async def test_latest_snapshot_skips_interrupted_unless_asked(steps: StepStore) -> None:
    """The default read returns the newest complete snapshot; include_interrupted the newest."""
    await steps.save_snapshot(_snap("r1", 0))
    await steps.save_snapshot(_snap("r1", 1, "interrupted"))
    default = await steps.latest_snapshot(run_id="r1")
    assert default is not None and default.step_index == 0
    opted = await steps.latest_snapshot(run_id="r1", include_interrupted=True)
    assert opted is not None and (opted.step_index, opted.state) == (1, "interrupted")


async def test_latest_is_last_written_not_highest_step(steps: StepStore) -> None:
    """Write order rules: a reused run id whose step_index restarts does not clobber."""
    for step in (7, 0, 2, 1):
        await steps.save_snapshot(_snap("r1", step))
    latest = await steps.latest_snapshot(run_id="r1")
    assert latest is not None and latest.step_index == 1
    assert [s.step_index for s in await steps.list_snapshots(run_id="r1")] == [7, 0, 2, 1]


async def test_list_snapshots_write_order_and_filter(steps: StepStore) -> None:
    """list_snapshots keeps write order and hides interrupted ones unless asked."""
    await steps.save_snapshot(_snap("r1", 2))
    await steps.save_snapshot(_snap("r1", 0, "interrupted"))
    await steps.save_snapshot(_snap("r1", 1))
    await steps.save_snapshot(_snap("r2", 9))
    assert [s.step_index for s in await steps.list_snapshots(run_id="r1")] == [2, 1]
    opted = await steps.list_snapshots(run_id="r1", include_interrupted=True)
    assert [(s.step_index, s.state) for s in opted] == [(2, "complete"), (0, "interrupted"), (1, "complete")]


# -- retention -----------------------------------------------------------------------------


async def _stored_snapshots(encrypted: EncryptedStore, run_id: str) -> int:
    query = encrypted.query(kind=SNAPSHOT_KIND, thread=run_id, statuses=("complete", "interrupted"))
    return len(await encrypted.find_records(query))


@pytest.mark.parametrize(
    ("keep", "states", "stored", "latest", "frontier"),
    [
        (None, "ccccc", 5, 4, 4),  # unbounded keeps every snapshot
        (5, "ccc", 3, 2, 2),  # under the bound
        (2, "cccc", 2, 3, 3),  # prunes to the newest window
        (2, "ccii", 3, 1, 3),  # the newest complete survives below an interrupted window
        (1, "ci", 2, 0, 1),  # keep=1 with an interrupted newest keeps two
        (2, "iii", 2, None, 2),  # all interrupted: nothing resumable by default
    ],
)
async def test_retention_bound(encrypted: EncryptedStore, keep: int | None, states: str,
                               stored: int, latest: int | None, frontier: int) -> None:  # fmt: skip
    """max_snapshots_per_run keeps the newest N plus the newest overall and newest complete."""
    steps = StepStore(encrypted, max_snapshots_per_run=keep)
    for step, state in enumerate(states):
        await steps.save_snapshot(_snap("r1", step, "complete" if state == "c" else "interrupted"))
    assert await _stored_snapshots(encrypted, "r1") == stored
    default = await steps.latest_snapshot(run_id="r1")
    assert (default.step_index if default else None) == latest
    newest = await steps.latest_snapshot(run_id="r1", include_interrupted=True)
    assert newest is not None and newest.step_index == frontier


async def test_pruning_is_scoped_to_the_run(encrypted: EncryptedStore) -> None:
    """Saving into one run never prunes another."""
    steps = StepStore(encrypted, max_snapshots_per_run=1)
    await steps.save_snapshot(_snap("r1", 0))
    for step in range(3):
        await steps.save_snapshot(_snap("r2", step))
    assert [s.step_index for s in await steps.list_snapshots(run_id="r1")] == [0]
    assert [s.step_index for s in await steps.list_snapshots(run_id="r2")] == [2]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_rejects_a_bad_retention_bound(encrypted: EncryptedStore, bad: Any) -> None:
    """A bound that is not an int >= 1 (or None) is refused at construction."""
    with pytest.raises(ConfigurationError, match="max_snapshots_per_run"):
        StepStore(encrypted, max_snapshots_per_run=bad)


async def test_keyed_snapshot_replay_is_dropped_even_after_pruning(encrypted: EncryptedStore) -> None:
    """A retried keyed save stays suppressed after retention pruned the original."""
    steps = StepStore(encrypted, max_snapshots_per_run=1)
    older = _snap("r1", 1, key="0:1:complete")
    newer = _snap("r1", 2, key="1:2:complete")
    await steps.save_snapshot(older)
    await steps.save_snapshot(older)
    await steps.save_snapshot(newer)
    await steps.save_snapshot(older)
    assert await steps.list_snapshots(run_id="r1", include_interrupted=True) == [newer]


# -- tool effects --------------------------------------------------------------------------


async def test_tool_effect_upsert_and_run_scope(steps: StepStore) -> None:
    """The latest record of a tool call wins; the same call id in another run is separate."""
    await steps.record_tool_effect(ToolEffectRecord(tool_call_id="t1", tool_name="ship", run_id="r1", status="started"))
    done = ToolEffectRecord(tool_call_id="t1", tool_name="ship", run_id="r1", status="completed",
                            started_at=_at(1), ended_at=_at(5), effect_summary="shipped",
                            idempotency_key="ship-42")  # fmt: skip
    await steps.record_tool_effect(done)
    await steps.record_tool_effect(ToolEffectRecord(tool_call_id="t1", tool_name="ship", run_id="r2", status="started"))
    assert await steps.get_tool_effect(run_id="r1", tool_call_id="t1") == done
    other = await steps.get_tool_effect(run_id="r2", tool_call_id="t1")
    assert other is not None and other.status == "started"


async def test_unresolved_tool_effects_are_the_started_ones(steps: StepStore) -> None:
    """Only calls whose latest record is `started` are unresolved (unknown after a crash)."""
    for call, status in (("t1", "started"), ("t2", "completed"), ("t3", "failed"), ("t4", "started")):
        await steps.record_tool_effect(ToolEffectRecord(tool_call_id=call, tool_name="x", run_id="r1", status=status))
    assert [r.tool_call_id for r in await steps.list_unresolved_tool_effects(run_id="r1")] == ["t1", "t4"]
    await steps.record_tool_effect(ToolEffectRecord(tool_call_id="t1", tool_name="x", run_id="r1", status="completed"))
    assert [r.tool_call_id for r in await steps.list_unresolved_tool_effects(run_id="r1")] == ["t4"]


# -- erasure -------------------------------------------------------------------------------


async def _fill(steps: StepStore, run_id: str, conversation_id: str) -> None:
    await steps.register_run(RunRecord(run_id=run_id, conversation_id=conversation_id))
    await steps.append_event(StepEvent(run_id=run_id, kind="run_started", step_index=0))
    await steps.save_snapshot(_snap(run_id, 0))
    await steps.record_tool_effect(ToolEffectRecord(tool_call_id="t", tool_name="x", run_id=run_id, status="started"))


async def test_delete_run_and_conversation(steps: StepStore, encrypted: EncryptedStore) -> None:
    """delete_run erases one run's records of every kind; delete_conversation its runs."""
    await _fill(steps, "r1", "c1")
    await _fill(steps, "r2", "c1")
    await _fill(steps, "r3", "c2")
    await encrypted.put(encrypted.record_id("r1", "", "other.kind", "k"), b"kept")
    assert await steps.delete_run("r1") == 4
    assert await steps.get_run(run_id="r1") is None
    assert await encrypted.get(encrypted.record_id("r1", "", "other.kind", "k")) is not None
    assert await steps.delete_conversation("c1") == 4
    assert [r.run_id for r in await steps.list_runs()] == ["r3"]
    assert await steps.list_events(run_id="r2") == []


# -- encryption ----------------------------------------------------------------------------


async def test_marker_never_reaches_storage(any_store: Store, tmp_path: Path) -> None:
    """A marker written through every method is in no stored record field, body or token."""
    async with EncryptedStore(any_store, deterministic_key_ring()) as encrypted:
        steps = StepStore(encrypted, max_snapshots_per_run=1)
        await steps.register_run(RunRecord(run_id="r1", conversation_id=f"conv {MARKER}", parent_run_id=f"p {MARKER}",
                                           agent_name=MARKER, metadata={MARKER: MARKER}))  # fmt: skip
        await steps.append_event(StepEvent(run_id="r1", kind="tool_call_failed", step_index=1, tool_name=MARKER,
                                           error=f"failed: {MARKER}", metadata={"m": MARKER},
                                           idempotency_key=MARKER))  # fmt: skip
        for step in range(3):
            await steps.save_snapshot(ContinuableSnapshot(
                run_id="r1", step_index=step, idempotency_key=f"{step}:{MARKER}", agent_name=MARKER,
                messages=[ModelRequest(parts=[UserPromptPart(content=f"secret {MARKER}")]),
                          ModelResponse(parts=[ToolCallPart("t", {"arg": MARKER}, tool_call_id="c1")]),
                          ModelRequest(parts=[ToolReturnPart("t", f"result {MARKER}", tool_call_id="c1")])]))  # fmt: skip
        await steps.record_tool_effect(ToolEffectRecord(tool_call_id="c1", tool_name=MARKER, run_id="r1",
                                                        status="completed", effect_summary=MARKER,
                                                        idempotency_key=MARKER))  # fmt: skip
        assert await steps.list_runs(conversation_id=f"conv {MARKER}")
        records = await any_store.find(Query(tenant=None))
    assert {r.id.kind for r in records} >= set(KINDS)
    needles = [MARKER.encode(), MARKER.encode().hex().encode()]
    for record in records:
        fields = repr((record.id, record.sort, record.group, record.status, sorted(record.tokens))).encode()
        for blob in (fields, record.body):
            assert not any(n in blob for n in needles), record.id.describe()
    for path in tmp_path.rglob("*"):  # the SQLite file, WAL included
        if path.is_file():
            assert not any(n in path.read_bytes() for n in needles), path


async def test_record_moved_to_another_run_fails(any_store: Store, steps: StepStore) -> None:
    """A run or snapshot body copied under another run's identity raises IntegrityError."""
    await steps.register_run(RunRecord(run_id="victim", agent_name="a"))
    await steps.save_snapshot(_snap("victim", 0))
    for kind in (RUN_KIND, SNAPSHOT_KIND):
        (record,) = await any_store.find(Query(tenant=steps.store.tenant, kind=kind, thread="victim"))
        moved = dataclasses.replace(record, id=dataclasses.replace(record.id, thread="thief"), version=0)
        await any_store.put(moved)
    with pytest.raises(IntegrityError):
        await steps.get_run(run_id="thief")
    with pytest.raises(IntegrityError):
        await steps.latest_snapshot(run_id="thief")


async def test_from_url_owns_its_store(tmp_path: Path) -> None:
    """from_url opens the store with tenant and ttl options and closes it on exit."""
    url = f"sqlite:///{tmp_path / 'steps.db'}"
    ring = deterministic_key_ring()
    async with StepStore.from_url(url, keys=ring, tenant="acme", ttl=3600) as steps:
        await steps.register_run(RunRecord(run_id="r1"))
        assert steps.store.tenant == "acme"
    async with StepStore.from_url(url, keys=ring, tenant="acme") as steps:
        assert await steps.get_run(run_id="r1") is not None
    async with StepStore.from_url(url, keys=ring, tenant="other") as steps:
        assert await steps.get_run(run_id="r1") is None


# -- a real agent --------------------------------------------------------------------------


def _order_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [p.content for m in messages if isinstance(m, ModelRequest)
               for p in m.parts if isinstance(p, ToolReturnPart)]  # fmt: skip
    if not returns:
        return ModelResponse(parts=[ToolCallPart("charge", {"cents": 4200}, tool_call_id="c1")])
    if len(returns) == 1:
        return ModelResponse(parts=[ToolCallPart("ship", {"city": "Oslo"}, tool_call_id="c2")])
    return ModelResponse(parts=[TextPart(" and ".join(map(str, returns)))])


class WorkerStopped(RuntimeError):
    """The worker stops before its second model request."""


@dataclasses.dataclass
class StopBeforeSecondRequest(AbstractCapability[Any]):
    requests: int = 0

    async def before_model_request(self, ctx: RunContext[Any], request_context: ModelRequestContext) -> ModelRequestContext:
        self.requests += 1
        if self.requests == 2:
            raise WorkerStopped("stopped after the completed tool call")
        return request_context


def _order_agent(steps: StepStore, run_id: str, calls: list[str], *, stop: bool = False) -> Agent[None, str]:
    capabilities: list[AbstractCapability[Any]] = [StepPersistence(store=steps, run_id=run_id)]
    if stop:
        capabilities.append(StopBeforeSecondRequest())
    agent = Agent(FunctionModel(_order_model), capabilities=capabilities)

    @agent.tool_plain
    def charge(cents: int) -> str:
        calls.append("charge")
        return f"charged {cents} {MARKER}"

    @agent.tool_plain
    def ship(city: str) -> str:
        calls.append("ship")
        return f"shipped to {city}"

    return agent


async def test_agent_interrupted_then_resumed(steps: StepStore, any_store: Store) -> None:
    """An agent stopped after a completed tool resumes from our store without rerunning it."""
    clean_calls: list[str] = []
    clean = await _order_agent(steps, "clean", clean_calls).run("order")

    calls: list[str] = []
    with pytest.raises(WorkerStopped):
        await _order_agent(steps, "r1", calls, stop=True).run("order")
    assert calls == ["charge"]
    kinds = [e.kind for e in await steps.list_events(run_id="r1")]
    assert kinds[0] == "run_started" and kinds[-1] == "run_failed"
    assert await steps.list_unresolved_tool_effects(run_id="r1") == []
    effect = await steps.get_tool_effect(run_id="r1", tool_call_id="c1")
    assert effect is not None and effect.status == "completed"

    history = await continue_run(steps, run_id="r1")
    resumed = await _order_agent(steps, "r1-resumed", calls).run(message_history=history)
    assert calls == ["charge", "ship"]
    assert resumed.output == clean.output == f"charged 4200 {MARKER} and shipped to Oslo"
    records = await any_store.find(Query(tenant=None))
    assert not any(MARKER.encode() in r.body for r in records)


async def test_agent_round_trip_with_test_model(steps: StepStore) -> None:
    """A TestModel agent run registers one run, its events and a resumable snapshot."""
    agent: Agent[None, str] = Agent(TestModel(), capabilities=[StepPersistence(store=steps, agent_name="vision")])
    result = await agent.run("classify this")
    assert isinstance(result.output, str)
    (run,) = await steps.list_runs()
    assert run.agent_name == "vision"
    kinds = [e.kind for e in await steps.list_events(run_id=run.run_id)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    snap = await steps.latest_snapshot(run_id=run.run_id)
    assert snap is not None
    first = snap.messages[0]
    assert isinstance(first, ModelRequest) and isinstance(first.parts[0], UserPromptPart)
    assert first.parts[0].content == "classify this"
