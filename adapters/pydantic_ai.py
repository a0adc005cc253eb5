"""pydantic-ai 2.x durable agent runs on encrypted storage (pydantic-ai-harness `StepStore`).

`StepStore` implements the `pydantic_ai_harness.step_persistence.StepStore` protocol
(targeted: pydantic-ai-harness 0.75, pydantic-ai 2.75) on top of the core record API
(`checkpointers.EncryptedStore`), so the harness's `StepPersistence` capability runs on
every store: memory, SQLite, Redis, PostgreSQL, Azure Blob and tiers of them. pydantic-ai
1.x users with pydantic-graph 1.x pick `checkpointers.pydantic_graph` instead.

Storage layout: each record's thread is the run id, namespace "", one kind per type:

- `pydantic_ai.run`, key `run`: the `RunRecord`. Blind-index tokens of `parent_run_id`
  and `conversation_id` serve `list_runs` filters (the values are never stored in clear).
- `pydantic_ai.event`: one record per `StepEvent`, `sort` a per-run sequence (append
  order). A keyed event (`idempotency_key`) is stored under a keyed HMAC of its key and
  inserted only if absent, so a retried append is dropped atomically on every backend.
- `pydantic_ai.snapshot`: one record per `ContinuableSnapshot`, `sort` a per-run
  sequence (write order), clear `status` `complete` or `interrupted`, so
  `latest_snapshot` reads one record. Keyed snapshots dedupe like events; when retention
  (`max_snapshots_per_run`) drops one, it leaves an empty `pruned` record behind, so a
  retried save stays suppressed after pruning.
- `pydantic_ai.tool_effect`, key the tool call id: the latest `ToolEffectRecord` (an
  upsert, as the harness defines it), clear `status` `started`/`completed`/`failed`, so
  `list_unresolved_tool_effects` reads only the `started` ones.

Every body (messages, tool names, error text, metadata, timestamps, summaries) is
encrypted and bound to its identity: a record copied to another run fails to decrypt
with `IntegrityError`. Only ids, sequences and statuses stay clear.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydantic

from checkpointers import (
    ConfigurationError,
    ConflictError,
    EncryptedStore,
    KeyRing,
    MissingDependencyError,
    Query,
    Record,
    RecordId,
    Write,
)
from checkpointers.lifecycle import StoreOwner

if TYPE_CHECKING:
    from pydantic_ai_harness.step_persistence import (
        ContinuableSnapshot,
        RunRecord,
        StepEvent,
        ToolEffectRecord,
    )

__all__ = [
    "EVENT_KIND",
    "KINDS",
    "RUN_KIND",
    "SNAPSHOT_KIND",
    "TOOL_EFFECT_KIND",
    "RunExistsError",
    "StepStore",
]

#: Record kind of a `RunRecord`.
RUN_KIND = "pydantic_ai.run"
#: Record kind of a `StepEvent`.
EVENT_KIND = "pydantic_ai.event"
#: Record kind of a `ContinuableSnapshot`.
SNAPSHOT_KIND = "pydantic_ai.snapshot"
#: Record kind of a `ToolEffectRecord`.
TOOL_EFFECT_KIND = "pydantic_ai.tool_effect"
#: Every kind this adapter writes.
KINDS = (RUN_KIND, EVENT_KIND, SNAPSHOT_KIND, TOOL_EFFECT_KIND)

_NAMESPACE = ""
_RUN_KEY = "run"
_SNAPSHOT_STATES = ("complete", "interrupted")
_PRUNED = "pruned"
_STARTED = "started"
_SORT_DIGITS = 20
_MAX_SEQUENCES = 1024


class RunExistsError(ConflictError, ValueError):
    """`register_run` found the run id registered already (the harness's `run_id` is
    single-shot). Also a `ValueError`, as the harness's own stores raise."""


@dataclass(frozen=True, slots=True)
class _Codec:
    """JSON codecs of the harness's record types (built once, on first use)."""

    run: pydantic.TypeAdapter[RunRecord]
    event: pydantic.TypeAdapter[StepEvent]
    snapshot: pydantic.TypeAdapter[ContinuableSnapshot]
    tool_effect: pydantic.TypeAdapter[ToolEffectRecord]


@functools.cache
def _codec() -> _Codec:
    """The codecs; raises `MissingDependencyError` without the `pydantic-ai` extra."""
    try:
        from pydantic_ai_harness.step_persistence import (
            ContinuableSnapshot,
            RunRecord,
            StepEvent,
            ToolEffectRecord,
        )
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "pydantic_ai_harness", "pydantic-ai") from None
    return _Codec(
        pydantic.TypeAdapter(RunRecord),
        pydantic.TypeAdapter(StepEvent),
        pydantic.TypeAdapter(ContinuableSnapshot),
        pydantic.TypeAdapter(ToolEffectRecord),
    )


def _check_max_snapshots(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError("max_snapshots_per_run must be an int >= 1 or None")


def _retained(records: Sequence[Record], keep: int) -> set[str]:
    """Keys to keep: the newest `keep`, the newest overall and the newest `complete`
    (so both `latest_snapshot` reads stay served). `records` are in write order."""
    kept = {r.id.key for r in records[-keep:]}
    kept.add(records[-1].id.key)
    complete = [r for r in records if r.status == "complete"]
    if complete:
        kept.add(complete[-1].id.key)
    return kept


class StepStore(StoreOwner):
    """Encrypted storage for pydantic-ai-harness `StepPersistence` on any store.

    Implements the harness's `StepStore` protocol (`register_run`, `get_run`,
    `list_runs`, `append_event`, `list_events`, `save_snapshot`, `latest_snapshot`,
    `record_tool_effect`, `get_tool_effect`, `list_unresolved_tool_effects`), plus
    `list_snapshots` (for `conversation_search`) and erasure by run and conversation.

    `from_url` opens and owns a store (use it as an async context manager); the
    constructor borrows an opened `EncryptedStore` and never closes it.

    Args:
        store: the record API to write through (borrowed).
        max_snapshots_per_run: keep at most this many snapshots per run (plus the newest
            `complete` one, when it is older); None keeps every snapshot.

    Raises:
        ConfigurationError: `max_snapshots_per_run` is not an int >= 1 or None.
        MissingDependencyError: pydantic-ai-harness is not installed.
    """

    def __init__(
        self,
        store: EncryptedStore,
        *,
        max_snapshots_per_run: int | None = None,
        _clock: Callable[[], float] = time.time,
    ) -> None:
        _check_max_snapshots(max_snapshots_per_run)
        self._codec = _codec()
        self.store = store
        self.max_snapshots_per_run = max_snapshots_per_run
        self._clock = _clock
        self._sequences: dict[tuple[str, str], int] = {}

    @classmethod
    def from_url(
        cls,
        url: str | Sequence[str],
        *,
        keys: KeyRing | None = None,
        tenant: str | None = None,
        ttl: float | None = None,
        max_snapshots_per_run: int | None = None,
    ) -> StepStore:
        """A step store on the store at `url` (a list of URLs = tiers, hottest first).

        Use it as an async context manager: it opens the store on entry and closes it
        on exit. `keys=None` reads `CHECKPOINTERS_KEY` or `CHECKPOINTERS_KEY_FILE`.

        Raises:
            ConfigurationError: malformed URL, unknown option, no key configured, or a
                bad `max_snapshots_per_run`.
            MissingDependencyError: an extra (the URL's scheme, pydantic-ai) is missing.
        """
        _check_max_snapshots(max_snapshots_per_run)
        _codec()  # before anything is opened
        store = EncryptedStore.from_url(url, keys=keys, tenant=tenant, ttl=ttl)
        steps = cls(store, max_snapshots_per_run=max_snapshots_per_run)
        steps._own(store)
        return steps

    def __repr__(self) -> str:
        return f"StepStore(store={self.store!r})"

    # -- helpers ----------------------------------------------------------------------

    def _rid(self, run_id: str, kind: str, key: str) -> RecordId:
        return self.store.record_id(run_id, _NAMESPACE, kind, key)

    async def _key(self, purpose: str, idempotency_key: str | None) -> str:
        """A record key: a keyed HMAC of the idempotency key, or a fresh random one."""
        if idempotency_key is None:
            return f"u{uuid.uuid4().hex}"
        (token,) = await self.store.tokens({purpose: idempotency_key})
        return f"k{token}"

    async def _next_sort(self, run_id: str, kind: str) -> str:
        """A sort key above every one the run has in `kind`, time-ordered across processes."""
        slot = (run_id, kind)
        last = self._sequences.get(slot)
        if last is None:
            newest = await self.store.find_records(
                self.store.query(
                    kind=kind, thread=run_id, namespace=_NAMESPACE, limit=1, descending=True
                )
            )
            stored = int(newest[0].sort) if newest and newest[0].sort.isdigit() else 0
            last = max(self._sequences.get(slot, 0), stored)
        seq = max(int(self._clock() * 1_000_000_000), last + 1)
        self._sequences[slot] = seq
        while len(self._sequences) > _MAX_SEQUENCES:
            del self._sequences[next(iter(self._sequences))]
        return f"{seq:0{_SORT_DIGITS}d}"

    async def _insert(self, rid: RecordId, data: bytes, *, sort: str, status: str = "") -> bool:
        """Insert if absent; False when the record exists (a retried keyed write)."""
        try:
            await self.store.put(rid, data, expected_version=0, sort=sort, status=status)
        except ConflictError:
            return False
        return True

    # -- runs -------------------------------------------------------------------------

    async def register_run(self, record: RunRecord) -> None:
        """Register a run; its id is single-shot.

        Raises:
            RunExistsError: the run id is registered already (also a `ValueError`).
            StoreUnavailableError: the store failed.
        """
        index = {
            name: value
            for name, value in (
                ("parent_run_id", record.parent_run_id),
                ("conversation_id", record.conversation_id),
            )
            if value is not None
        }
        try:
            await self.store.put(
                self._rid(record.run_id, RUN_KIND, _RUN_KEY),
                self._codec.run.dump_json(record),
                expected_version=0,
                sort=f"{int(self._clock() * 1_000_000_000):0{_SORT_DIGITS}d}",
                index=index or None,
            )
        except ConflictError:
            raise RunExistsError(f"run_id {record.run_id!r} is already registered") from None

    async def get_run(self, *, run_id: str) -> RunRecord | None:
        """The run's record, or None.

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        entry = await self.store.get(self._rid(run_id, RUN_KIND, _RUN_KEY))
        return None if entry is None else self._codec.run.validate_json(entry.data)

    async def list_runs(
        self,
        *,
        parent_run_id: str | None = None,
        conversation_id: str | None = None,
    ) -> list[RunRecord]:
        """Runs matching both filters (None: any), by `started_at` ascending (an instant).

        Filters match blind-index tokens: the ids are never stored in clear.

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        filters = {
            name: value
            for name, value in (
                ("parent_run_id", parent_run_id),
                ("conversation_id", conversation_id),
            )
            if value is not None
        }
        tokens = await self.store.tokens(filters) if filters else frozenset()
        entries = await self.store.find(
            self.store.query(kind=RUN_KIND, namespace=_NAMESPACE, tokens=tokens)
        )
        runs = [(self._codec.run.validate_json(e.data), e.record.sort) for e in entries]
        runs.sort(key=lambda pair: (pair[0].started_at, pair[1]))
        return [run for run, _ in runs]

    # -- events -----------------------------------------------------------------------

    async def append_event(self, event: StepEvent) -> None:
        """Append an event; a keyed event already appended to the run is dropped.

        Raises:
            RecordTooLargeError, StoreUnavailableError.
        """
        await self._insert(
            self._rid(event.run_id, EVENT_KIND, await self._key("event", event.idempotency_key)),
            self._codec.event.dump_json(event),
            sort=await self._next_sort(event.run_id, EVENT_KIND),
        )

    async def list_events(self, *, run_id: str) -> list[StepEvent]:
        """The run's events in append order.

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        entries = await self.store.find(
            self.store.query(kind=EVENT_KIND, thread=run_id, namespace=_NAMESPACE)
        )
        return [self._codec.event.validate_json(e.data) for e in entries]

    # -- snapshots --------------------------------------------------------------------

    async def save_snapshot(self, snapshot: ContinuableSnapshot) -> None:
        """Save a snapshot after the run's others; a keyed snapshot saved before (even if
        pruned since) is dropped. Applies `max_snapshots_per_run`.

        Raises:
            RecordTooLargeError, StoreUnavailableError.
        """
        run_id = snapshot.run_id
        rid = self._rid(
            run_id, SNAPSHOT_KIND, await self._key("snapshot", snapshot.idempotency_key)
        )
        saved = await self._insert(
            rid,
            self._codec.snapshot.dump_json(snapshot),
            sort=await self._next_sort(run_id, SNAPSHOT_KIND),
            status=snapshot.state,
        )
        if saved and self.max_snapshots_per_run is not None:
            await self._prune(run_id, self.max_snapshots_per_run)

    async def _prune(self, run_id: str, keep: int) -> None:
        records = await self.store.find_records(self._snapshot_query(run_id, _SNAPSHOT_STATES))
        if len(records) <= keep:
            return
        retained = _retained(records, keep)
        dropped = [r for r in records if r.id.key not in retained]
        keyed = [r for r in dropped if r.id.key.startswith("k")]
        if keyed:  # tombstones: a retried save of a pruned keyed snapshot stays dropped
            await self.store.write([Write(r.id, b"", sort=r.sort, status=_PRUNED) for r in keyed])
        unkeyed = [r.id for r in dropped if not r.id.key.startswith("k")]
        if unkeyed:
            await self.store.delete(unkeyed)

    def _snapshot_query(self, run_id: str, states: Sequence[str]) -> Query:
        return self.store.query(
            kind=SNAPSHOT_KIND, thread=run_id, namespace=_NAMESPACE, statuses=states
        )

    async def latest_snapshot(
        self, *, run_id: str, include_interrupted: bool = False
    ) -> ContinuableSnapshot | None:
        """The newest `complete` snapshot (with `include_interrupted`: the newest one).

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        states = _SNAPSHOT_STATES if include_interrupted else ("complete",)
        entry = await self.store.latest(self._snapshot_query(run_id, states))
        return None if entry is None else self._codec.snapshot.validate_json(entry.data)

    async def list_snapshots(
        self, *, run_id: str, include_interrupted: bool = False
    ) -> list[ContinuableSnapshot]:
        """The run's retained snapshots in write order (`interrupted` ones only if asked).

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        states = _SNAPSHOT_STATES if include_interrupted else ("complete",)
        entries = await self.store.find(self._snapshot_query(run_id, states))
        return [self._codec.snapshot.validate_json(e.data) for e in entries]

    # -- tool effects -----------------------------------------------------------------

    async def record_tool_effect(self, record: ToolEffectRecord) -> None:
        """Record the latest state of a tool call (replaces the previous record).

        Raises:
            RecordTooLargeError, StoreUnavailableError.
        """
        await self.store.put(
            self._rid(record.run_id, TOOL_EFFECT_KIND, record.tool_call_id),
            self._codec.tool_effect.dump_json(record),
            status=record.status,
        )

    async def get_tool_effect(self, *, run_id: str, tool_call_id: str) -> ToolEffectRecord | None:
        """The latest record of a tool call, or None.

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        entry = await self.store.get(self._rid(run_id, TOOL_EFFECT_KIND, tool_call_id))
        return None if entry is None else self._codec.tool_effect.validate_json(entry.data)

    async def list_unresolved_tool_effects(self, *, run_id: str) -> list[ToolEffectRecord]:
        """Tool calls whose latest record is `started`: in flight when the process last
        wrote, so unknown after a crash (the tool may have run).

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        entries = await self.store.find(
            self.store.query(
                kind=TOOL_EFFECT_KIND, thread=run_id, namespace=_NAMESPACE, statuses=(_STARTED,)
            )
        )
        return [self._codec.tool_effect.validate_json(e.data) for e in entries]

    # -- erasure ----------------------------------------------------------------------

    async def delete_run(self, run_id: str) -> int:
        """Delete every record of the run this adapter wrote (other kinds are kept).

        Returns:
            How many records existed.

        Raises:
            StoreUnavailableError: the store failed.
        """
        records = await self.store.find_records(self.store.query(thread=run_id))
        ids = [r.id for r in records if r.id.kind in KINDS]
        return await self.store.delete(ids) if ids else 0

    async def delete_conversation(self, conversation_id: str) -> int:
        """Delete every run of a conversation (found through the blind index).

        Returns:
            How many records existed.

        Raises:
            StoreUnavailableError: the store failed.
        """
        tokens = await self.store.tokens({"conversation_id": conversation_id})
        runs = await self.store.find_records(
            self.store.query(kind=RUN_KIND, namespace=_NAMESPACE, tokens=tokens)
        )
        deleted = 0
        for run in runs:
            deleted += await self.delete_run(run.id.thread)
        return deleted
