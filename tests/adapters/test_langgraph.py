"""The LangGraph saver: conformance, real graphs, sync API, encryption at rest."""

from __future__ import annotations

import asyncio
import operator
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from checkpointers import (
    ConfigurationError,
    EncryptedStore,
    IntegrityError,
    KeyUnavailableError,
    Store,
)
from checkpointers.langgraph import CheckpointSaver
from checkpointers.testing import deterministic_key_ring

# -- stores: every backend on real services (tests/backends.py) -----------------------


@pytest.fixture
async def encrypted_store(any_store: Store) -> AsyncIterator[EncryptedStore]:
    """An opened EncryptedStore over each backend, with a deterministic key ring."""
    async with EncryptedStore(any_store, deterministic_key_ring()) as enc:
        yield enc


@pytest.fixture
async def saver(encrypted_store: EncryptedStore) -> AsyncIterator[CheckpointSaver]:
    """A saver borrowing the store, entered on the test's event loop."""
    async with CheckpointSaver(encrypted_store) as s:
        yield s


def thread_config(thread_id: str | None = None, **configurable: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id or str(uuid.uuid4()), **configurable}}


# -- graphs ---------------------------------------------------------------------------


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    note: str


def approval_graph() -> StateGraph[State]:
    """prepare -> approve (interrupts for a human answer) -> finish."""

    def prepare(state: State) -> State:
        return {"log": ["prepare"]}

    def approve(state: State) -> State:
        answer = interrupt({"question": "ship it?"})
        return {"log": [f"approve:{answer}"]}

    def finish(state: State) -> State:
        return {"log": ["finish"]}

    builder = StateGraph(State)
    builder.add_node("prepare", prepare)
    builder.add_node("approve", approve)
    builder.add_node("finish", finish)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "approve")
    builder.add_edge("approve", "finish")
    builder.add_edge("finish", END)
    return builder


def echo_graph() -> StateGraph[State]:
    """Two nodes that append to the log and copy the note."""

    def first(state: State) -> State:
        return {"log": [f"first:{state.get('note', '')}"]}

    def second(state: State) -> State:
        return {"log": ["second"]}

    builder = StateGraph(State)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    return builder


# -- conformance ------------------------------------------------------------------------


async def test_conformance_suite_passes(
    encrypted_store: EncryptedStore, request: pytest.FixtureRequest
) -> None:
    """The official LangGraph conformance suite passes every base and extended capability."""

    @checkpointer_test(name=f"CheckpointSaver[{request.node.callspec.id}]")
    async def factory() -> AsyncIterator[CheckpointSaver]:
        async with CheckpointSaver(encrypted_store) as fresh:
            yield fresh

    report = await validate(factory)
    assert report.passed_all(), report.to_dict()
    assert {c.value for c in ALL_CAPABILITIES} == {
        name for name, result in report.results.items() if result.detected and result.passed
    }


# -- graphs over every store ---------------------------------------------------------


async def test_interrupt_then_resume_with_command(saver: CheckpointSaver) -> None:
    """A graph paused by interrupt() resumes with Command(resume=...) to the end."""
    graph = approval_graph().compile(checkpointer=saver)
    config = thread_config()
    paused = await graph.ainvoke({"log": []}, config)
    assert paused["__interrupt__"][0].value == {"question": "ship it?"}
    assert (await graph.aget_state(config)).next == ("approve",)
    done = await graph.ainvoke(Command(resume="yes"), config)
    assert done["log"] == ["prepare", "approve:yes", "finish"]


async def test_sync_api_from_a_worker_thread(saver: CheckpointSaver) -> None:
    """The sync API, called from another thread, runs on the loop that opened the saver."""
    graph = echo_graph().compile(checkpointer=saver)
    config = thread_config()

    def run() -> tuple[dict[str, Any], int]:
        result = graph.invoke({"log": [], "note": "sync"}, config)
        return result, len(list(graph.get_state_history(config)))

    result, history = await asyncio.to_thread(run)
    assert result["log"] == ["first:sync", "second"]
    assert history == 4
    assert (await graph.aget_state(config)).values["log"] == ["first:sync", "second"]


async def test_sync_method_on_the_saver_loop_raises(saver: CheckpointSaver) -> None:
    """A sync method called on the event loop that owns the saver refuses (no deadlock)."""
    with pytest.raises(ConfigurationError, match="own event loop"):
        saver.get_tuple(thread_config())


async def test_metadata_filter_matches_exact_values(saver: CheckpointSaver) -> None:
    """list(filter=...) finds checkpoints by metadata across threads and namespaces."""
    graph = echo_graph().compile(checkpointer=saver)
    tag = uuid.uuid4().hex
    alice, bob = thread_config(), thread_config()
    await graph.ainvoke({"log": []}, {**alice, "metadata": {"user": "alice", "tag": tag}})
    await graph.ainvoke({"log": []}, {**bob, "metadata": {"user": "bob", "tag": tag}})

    found = [t async for t in saver.alist(None, filter={"user": "alice", "tag": tag})]
    assert len(found) == 4
    assert {t.config["configurable"]["thread_id"] for t in found} == {
        alice["configurable"]["thread_id"]
    }
    loops = [t async for t in saver.alist(None, filter={"tag": tag, "source": "loop"})]
    assert len(loops) == 6
    step_one = [t async for t in saver.alist(alice, filter={"step": 1.0})]
    assert [t.metadata["step"] for t in step_one] == [1]
    assert [t async for t in saver.alist(None, filter={"user": "carol", "tag": tag})] == []
    assert [t async for t in saver.alist(None, filter={"tag": object()})] == []


async def test_tampered_checkpoint_raises_integrity_error(
    saver: CheckpointSaver, encrypted_store: EncryptedStore
) -> None:
    """A checkpoint body changed in storage fails closed through get_tuple."""
    graph = echo_graph().compile(checkpointer=saver)
    config = thread_config()
    await graph.ainvoke({"log": []}, config)
    latest = await saver.aget_tuple(config)
    assert latest is not None
    rid = encrypted_store.record_id(
        config["configurable"]["thread_id"], "", "checkpoint",
        latest.config["configurable"]["checkpoint_id"],
    )  # fmt: skip
    raw = await encrypted_store.store.get(rid)
    assert raw is not None
    body = bytearray(raw.body)
    body[-5] ^= 0x01
    await encrypted_store.store.put(replace(raw, body=bytes(body)))
    with pytest.raises(IntegrityError):
        await saver.aget_tuple(config)


async def test_checkpoint_moved_to_another_thread_raises(
    saver: CheckpointSaver, encrypted_store: EncryptedStore
) -> None:
    """A checkpoint row copied verbatim into another thread does not decrypt there."""
    graph = echo_graph().compile(checkpointer=saver)
    source, target = thread_config(), thread_config()
    await graph.ainvoke({"log": []}, source)
    query = encrypted_store.query(thread=source["configurable"]["thread_id"])
    moved = [
        replace(r, id=replace(r.id, thread=target["configurable"]["thread_id"]), version=0)
        for r in await encrypted_store.find_records(query)
    ]
    await encrypted_store.store.put_many(moved)
    with pytest.raises(IntegrityError):
        await saver.aget_tuple(target)


async def test_copy_thread_reencrypts_for_the_target(saver: CheckpointSaver) -> None:
    """copy_thread gives the target a readable, independent copy of the whole history."""
    graph = approval_graph().compile(checkpointer=saver)
    source, target = thread_config(), thread_config()
    await graph.ainvoke({"log": []}, source)
    await saver.acopy_thread(
        source["configurable"]["thread_id"], target["configurable"]["thread_id"]
    )
    await saver.adelete_thread(source["configurable"]["thread_id"])
    done = await graph.ainvoke(Command(resume="copied"), target)
    assert done["log"] == ["prepare", "approve:copied", "finish"]


# -- sync context manager and crash-free resume across instances --------------------------


def test_sync_with_from_url_runs_a_graph(tmp_path: Path) -> None:
    """`with CheckpointSaver.from_url(...)` works with graph.invoke and the sync API."""
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    config = thread_config()
    with CheckpointSaver.from_url(url, keys=deterministic_key_ring()) as saver:
        graph = echo_graph().compile(checkpointer=saver)
        assert graph.invoke({"log": [], "note": "n"}, config)["log"] == ["first:n", "second"]
        assert len(list(saver.list(config))) == 4
        assert len(list(saver.list(None, limit=2))) == 2
        latest = saver.get_tuple(config)
        assert latest is not None and latest.metadata["step"] == 2
        saver.delete_thread(config["configurable"]["thread_id"])
        assert saver.get_tuple(config) is None


def test_sync_call_inside_the_portal_loop_raises() -> None:
    """A sync method called from the store's own event loop raises instead of hanging."""
    with EncryptedStore.from_url("memory://", keys=deterministic_key_ring()) as store:
        saver = CheckpointSaver(store)

        async def nested() -> None:
            saver.get_tuple(thread_config())

        with pytest.raises(ConfigurationError, match="own event loop"):
            store.call(nested)


async def test_sync_saver_serves_async_callers(tmp_path: Path) -> None:
    """A saver opened with `with` also serves ainvoke from another event loop."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    config = thread_config()
    saver = await asyncio.to_thread(
        CheckpointSaver.from_url(url, keys=deterministic_key_ring()).__enter__
    )
    try:
        graph = echo_graph().compile(checkpointer=saver)
        assert (await graph.ainvoke({"log": []}, config))["log"] == ["first:", "second"]
    finally:
        await asyncio.to_thread(saver.close)


async def test_interrupt_resumed_by_a_new_saver_on_the_same_file(tmp_path: Path) -> None:
    """A paused thread is resumed by a new saver instance opened on the same SQLite file."""
    url = f"sqlite:///{tmp_path / 'hitl.db'}"
    ring = deterministic_key_ring()
    config = thread_config()
    async with CheckpointSaver.from_url(url, keys=ring) as first:
        graph = approval_graph().compile(checkpointer=first)
        paused = await graph.ainvoke({"log": []}, config, durability="sync")
        assert "__interrupt__" in paused
    async with CheckpointSaver.from_url(url, keys=ring) as second:
        graph = approval_graph().compile(checkpointer=second)
        assert (await graph.aget_state(config)).next == ("approve",)
        done = await graph.ainvoke(Command(resume="ok"), config)
    assert done["log"] == ["prepare", "approve:ok", "finish"]


async def test_wrong_key_cannot_read(tmp_path: Path) -> None:
    """Checkpoints written under one key are unreadable with another key."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    config = thread_config()
    async with CheckpointSaver.from_url(url, keys=deterministic_key_ring("a")) as saver:
        await echo_graph().compile(checkpointer=saver).ainvoke({"log": []}, config)
    async with CheckpointSaver.from_url(url, keys=deterministic_key_ring("b")) as saver:
        with pytest.raises(KeyUnavailableError):
            await saver.aget_tuple(config)


async def test_sqlite_file_holds_no_plaintext(tmp_path: Path) -> None:
    """A canary put in state, metadata and writes never reaches the SQLite file in clear."""
    canary = f"CANARY-{uuid.uuid4().hex}"
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    config = {**thread_config(), "metadata": {"secret_meta": canary}}
    async with CheckpointSaver.from_url(url, keys=deterministic_key_ring()) as saver:
        graph = approval_graph().compile(checkpointer=saver)
        await graph.ainvoke({"log": [canary], "note": canary}, config, durability="sync")
        await graph.ainvoke(Command(resume=canary), config, durability="sync")
        found = [t async for t in saver.alist(None, filter={"secret_meta": canary})]
        assert found and all(t.metadata["secret_meta"] == canary for t in found)
        assert (await saver.aget_tuple(config)) is not None
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("canary"))
    assert raw
    for needle in (canary.encode(), canary.encode("utf-16-le"), b"secret_meta"):
        assert needle not in raw


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_every_durability_mode_resumes(saver: CheckpointSaver, durability: Any) -> None:
    """Interrupt and resume work with each LangGraph durability mode."""
    graph = approval_graph().compile(checkpointer=saver)
    config = thread_config()
    await graph.ainvoke({"log": []}, config, durability=durability)
    done = await graph.ainvoke(Command(resume="d"), config, durability=durability)
    assert done["log"] == ["prepare", "approve:d", "finish"]


async def test_functional_api_entrypoint_resumes(saver: CheckpointSaver) -> None:
    """An @entrypoint workflow with tasks pauses on interrupt and resumes without redoing tasks."""
    calls: list[str] = []

    @task
    def draft(topic: str) -> str:
        calls.append(topic)
        return f"draft about {topic}"

    @entrypoint(checkpointer=saver)
    async def workflow(topic: str) -> dict[str, str]:
        text = await draft(topic)
        verdict = interrupt({"review": text})
        return {"text": text, "verdict": verdict}

    config = thread_config()
    await workflow.ainvoke("otters", config)
    result = await workflow.ainvoke(Command(resume="approved"), config)
    assert result == {"text": "draft about otters", "verdict": "approved"}
    assert calls == ["otters"]


async def test_subgraph_interrupt_uses_namespaces(saver: CheckpointSaver) -> None:
    """A subgraph that interrupts is checkpointed in its own namespace and resumes."""
    inner = approval_graph().compile()
    builder = StateGraph(State)
    builder.add_node("inner", inner)
    builder.add_edge(START, "inner")
    builder.add_edge("inner", END)
    graph = builder.compile(checkpointer=saver)
    config = thread_config()
    await graph.ainvoke({"log": []}, config)
    namespaces = {
        t.config["configurable"]["checkpoint_ns"] async for t in saver.alist(config_all(config))
    }
    assert "" in namespaces and any(ns.startswith("inner:") for ns in namespaces)
    done = await graph.ainvoke(Command(resume="sub"), config)
    assert done["log"] == ["prepare", "approve:sub", "finish"]


async def test_parallel_branch_failure_keeps_sibling_writes(saver: CheckpointSaver) -> None:
    """When one parallel branch fails, the retry does not rerun the branch that succeeded."""
    runs: list[str] = []
    fail = {"once": True}

    good_done = threading.Event()

    def good(state: State) -> State:
        runs.append("good")
        good_done.set()
        return {"log": ["good"]}

    def flaky(state: State) -> State:
        runs.append("flaky")
        if fail["once"]:
            fail["once"] = False
            assert good_done.wait(timeout=30)  # fail only after the sibling finished
            raise RuntimeError("transient")
        return {"log": ["flaky"]}

    builder = StateGraph(State)
    builder.add_node("good", good)
    builder.add_node("flaky", flaky)
    builder.add_edge(START, "good")
    builder.add_edge(START, "flaky")
    builder.add_edge("good", END)
    builder.add_edge("flaky", END)
    graph = builder.compile(checkpointer=saver)
    config = thread_config()
    with pytest.raises(RuntimeError, match="transient"):
        await graph.ainvoke({"log": []}, config)
    pending = await saver.aget_tuple(config)
    assert pending is not None and pending.pending_writes
    done = await graph.ainvoke(None, config)
    assert sorted(done["log"]) == ["flaky", "good"]
    assert sorted(runs) == ["flaky", "flaky", "good"]


async def test_time_travel_from_an_older_checkpoint(saver: CheckpointSaver) -> None:
    """Replaying from an older checkpoint forks the thread and keeps the history."""
    graph = echo_graph().compile(checkpointer=saver)
    config = thread_config()
    await graph.ainvoke({"log": [], "note": "a"}, config)
    history = [s async for s in graph.aget_state_history(config)]
    after_first = next(s for s in history if s.next == ("second",))
    forked = await graph.ainvoke(None, after_first.config)
    assert forked["log"] == ["first:a", "second"]
    after = [
        s.config["configurable"]["checkpoint_id"] async for s in graph.aget_state_history(config)
    ]
    assert len(after) > len(history)
    assert {s.config["configurable"]["checkpoint_id"] for s in history} <= set(after)


def config_all(config: dict[str, Any]) -> dict[str, Any]:
    """The thread's config without a namespace: list() then covers every namespace."""
    return {"configurable": {"thread_id": config["configurable"]["thread_id"]}}
