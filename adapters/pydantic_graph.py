"""pydantic-graph state persistence on encrypted storage, with leases and crash recovery.

`StatePersistence` implements `pydantic_graph.persistence.BaseStatePersistence` from
pydantic-graph 1.x (the persistence API is gone in 2.0) on top of the core record API
(`checkpointers.EncryptedStore`), so it runs on every store.

Storage layout: one record per snapshot, identity `(tenant, run_id, "", KIND, snapshot_id)`.
Clear routing fields: `sort` (a zero-padded, monotonically allocated sequence that keeps
insertion order), `status` (`created`, `pending`, `running`, `success`, `error`, or `end`
for an end snapshot) and `lease_until`. The encrypted body is the snapshot as pydantic
JSON (state, node, result, timestamps) plus the error text of a failed node. The clear
`status` is authoritative: claims change it without rewriting the body.

Beyond upstream, a snapshot that is `pending` or `running` holds a lease
(`lease_seconds`, renewed while the node runs). `load_next` also claims a snapshot whose
lease expired, and `recover()` requeues at once the snapshot a dead worker left behind, so
`Graph.iter_from_persistence` resumes the run from its last completed node.

Side effects are at-least-once: a node that was running when its process died runs
again, from the state saved before it started. Make nodes idempotent, or key their
external effects on the snapshot id (a node reads it with `self.get_snapshot_id()`).

Operators list runs (finished, stuck with an expired lease, failed, ...) with
`StatePersistence.list_runs(store)`, which reads routing fields only.

This module maps pydantic-graph onto `checkpointers.runs.RunRecords` (ordered inserts,
claims, leases, requeue, framework-free) and keeps what is pydantic-graph's: snapshot
types and bodies, upstream's errors and state machine checks. Every time it reads comes
from one injected wall clock (leases, sort keys, `start_ts`); node durations come from a
monotonic timer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any, cast

from checkpointers import MissingDependencyError

try:  # the `pydantic-graph` extra: one clear error instead of a traceback from deep inside
    import pydantic_graph.persistence  # noqa: F401
except ImportError as exc:
    raise MissingDependencyError(exc.name or "pydantic_graph", "pydantic-graph") from None

import pydantic
from pydantic_core import PydanticSerializationError
from pydantic_graph import BaseNode, End
from pydantic_graph.exceptions import GraphNodeStatusError, GraphRuntimeError
from pydantic_graph.persistence import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    StateT,
)

from checkpointers import (
    ConfigurationError,
    EncryptedStore,
    Entry,
    KeyRing,
    RecordId,
    SerializationError,
)
from checkpointers.lifecycle import StoreOwner
from checkpointers.runs import END, RunRecords, RunSummary, list_runs

__all__ = ["DEFAULT_LEASE_SECONDS", "KIND", "RunSummary", "StatePersistence"]

#: Record kind of a pydantic-graph snapshot.
KIND = "pydantic_graph.snapshot"
#: Seconds a `pending` or `running` snapshot stays claimed without renewal.
DEFAULT_LEASE_SECONDS = 300.0

_NAMESPACE = ""


def _patch(data: bytes, **fields: Any) -> bytes:
    """Change top-level fields of a snapshot body without knowing the graph's types."""
    doc = json.loads(data)
    doc.update(fields)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class StatePersistence(StoreOwner, BaseStatePersistence[StateT, RunEndT]):
    """Encrypted, durable persistence for one pydantic-graph run.

    Use one instance per run; many runs (and many instances of one run, in as many
    processes) share a store. `from_url` opens and owns a store; the constructor borrows
    an opened `EncryptedStore` and never closes it.

    Args:
        store: the record API to write through (borrowed).
        run_id: the run's identity, unique within the store's tenant.
        lease_seconds: how long a `pending`/`running` snapshot stays claimed without
            renewal; after that `load_next` of any worker may take it over.
        renew_leases: renew the lease while a node runs (every third of the lease).

    Raises:
        ConfigurationError: an empty or invalid `run_id`, or a non-positive lease.
    """

    def __init__(
        self,
        store: EncryptedStore,
        *,
        run_id: str,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        renew_leases: bool = True,
        _clock: Callable[[], float] = time.time,
        _timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._check_options(run_id, lease_seconds)
        self.store = store
        self.run_id = run_id
        self.lease_seconds = float(lease_seconds)
        self.renew_leases = renew_leases
        self._clock = _clock  # wall time: leases, sort keys, start_ts
        self._timer = _timer  # monotonic: node durations
        self._adapter: pydantic.TypeAdapter[Snapshot[StateT, RunEndT]] | None = None
        self._run = RunRecords(
            store,
            run_id=run_id,
            kind=KIND,
            namespace=_NAMESPACE,
            lease_seconds=self.lease_seconds,
            clock=_clock,
        )

    @staticmethod
    def _check_options(run_id: str, lease_seconds: float) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ConfigurationError("run_id must be a non-empty string")
        try:
            RecordId("t", run_id, _NAMESPACE, KIND, "k")
        except ValueError:
            raise ConfigurationError("run_id is too long or holds NUL") from None
        if not math.isfinite(lease_seconds) or lease_seconds <= 0:
            raise ConfigurationError("lease_seconds must be a positive number")

    @classmethod
    def from_url(
        cls,
        url: str | Sequence[str],
        *,
        run_id: str,
        keys: KeyRing | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        renew_leases: bool = True,
        tenant: str | None = None,
        ttl: float | None = None,
    ) -> StatePersistence[StateT, RunEndT]:
        """Persistence on the store at `url` (a list of URLs = tiers, hottest first).

        Use it as an async context manager: it opens the store on entry and closes it on
        exit. `keys=None` reads `CHECKPOINTERS_KEY` or `CHECKPOINTERS_KEY_FILE`.

        Raises:
            ConfigurationError: malformed URL, unknown option, no key configured.
            MissingDependencyError: the extra for the URL's scheme is not installed.
        """
        cls._check_options(run_id, lease_seconds)  # before anything is opened
        store = EncryptedStore.from_url(url, keys=keys, tenant=tenant, ttl=ttl)
        persistence: StatePersistence[StateT, RunEndT] = cls(
            store, run_id=run_id, lease_seconds=lease_seconds, renew_leases=renew_leases
        )
        persistence._own(store)
        return persistence

    # -- types ------------------------------------------------------------------------

    def should_set_types(self) -> bool:
        """True until `set_types` has built the snapshot type adapter."""
        return self._adapter is None

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        """Build the type adapter of one snapshot (called by `set_graph_types`)."""
        snapshot_type = cast(Any, Snapshot)[state_type, run_end_type]
        one_snapshot: Any = Annotated[snapshot_type, pydantic.Discriminator("kind")]
        self._adapter = pydantic.TypeAdapter(one_snapshot)

    def _types(self) -> pydantic.TypeAdapter[Snapshot[StateT, RunEndT]]:
        if self._adapter is None:
            raise ConfigurationError(
                "the graph's types are not set: call persistence.set_graph_types(graph) "
                "(graph.iter, iter_from_persistence and initialize do it)"
            )
        return self._adapter

    def _dump(self, snapshot: Snapshot[StateT, RunEndT]) -> bytes:
        try:
            return self._types().dump_json(snapshot)
        except PydanticSerializationError as exc:
            raise SerializationError(
                f"snapshot {snapshot.id!r} of run {self.run_id!r}: its state, node or "
                f"result cannot be serialized by pydantic ({exc})"
            ) from exc

    def _load(self, entry: Entry) -> Snapshot[StateT, RunEndT]:
        try:
            snapshot = self._types().validate_json(entry.data)
        except (pydantic.ValidationError, ValueError) as exc:
            count = exc.error_count() if isinstance(exc, pydantic.ValidationError) else 1
            # No chaining: validation errors quote the (decrypted) input.
            raise SerializationError(
                f"{entry.id.describe()}: snapshot does not match the graph's types "
                f"({count} validation error(s))"
            ) from None
        if isinstance(snapshot, NodeSnapshot):
            snapshot.status = cast(Any, entry.record.status)
            snapshot.node.set_snapshot_id(snapshot.id)
        else:
            snapshot.result.set_snapshot_id(snapshot.id)
        return snapshot

    # -- snapshots --------------------------------------------------------------------

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        """Save a `created` snapshot of `state` before `next_node` runs.

        The state is serialized now, so later changes to it do not alter history. A
        snapshot id is stored once: snapshotting an id that exists keeps the first.

        Raises:
            SerializationError: the state or node cannot be serialized.
            ConfigurationError: the graph's types are not set.
            StoreUnavailableError: the store failed.
        """
        snapshot: Snapshot[StateT, RunEndT] = NodeSnapshot(state=state, node=next_node)
        await self._run.insert(snapshot.id, self._dump(snapshot))

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        """Save a node snapshot unless `snapshot_id` exists (atomic insert-if-absent).

        Raises:
            SerializationError: the state or node cannot be serialized.
            ConfigurationError: the graph's types are not set.
            StoreUnavailableError: the store failed.
        """
        snapshot: Snapshot[StateT, RunEndT] = NodeSnapshot(
            state=state, node=next_node, id=snapshot_id
        )
        await self._run.insert(snapshot_id, self._dump(snapshot))

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        """Save the end of the run: the final state and result.

        Raises:
            SerializationError: the state or result cannot be serialized.
            ConfigurationError: the graph's types are not set.
            StoreUnavailableError: the store failed.
        """
        snapshot: Snapshot[StateT, RunEndT] = EndSnapshot(state=state, result=end)
        await self._run.insert(snapshot.id, self._dump(snapshot), end=True)

    # -- running a node ---------------------------------------------------------------

    @staticmethod
    def _check_startable(snapshot_id: str, status: str | None) -> None:
        if status is None:
            raise LookupError(f"No snapshot found with id={snapshot_id!r}")
        if status == END:
            raise GraphRuntimeError(
                f"snapshot {snapshot_id!r} is an end snapshot: only node snapshots run"
            )
        GraphNodeStatusError.check(cast(Any, status))

    @asynccontextmanager
    async def record_run(self, snapshot_id: str) -> AsyncIterator[None]:
        """Record a node run: `running` on entry, `success` or `error` on exit.

        Compare-and-set on the record's version guarantees that of two workers starting
        the same snapshot, one gets `GraphNodeStatusError`. The lease is renewed while
        the body runs. An exception is recorded (its text encrypted) and re-raised; a
        cancellation or crash leaves the snapshot `running` until `recover()` or the
        lease's expiry.

        Raises:
            LookupError: no snapshot has this id (upstream's message).
            GraphNodeStatusError: the snapshot is not `created` or `pending`.
            GraphRuntimeError: the id is an end snapshot's.
            ConflictError: another worker took the snapshot over while the node ran.
            StoreUnavailableError: the store failed.
        """
        now = datetime.fromtimestamp(self._clock(), tz=timezone.utc)
        step = await self._run.start(
            snapshot_id,
            lambda status: self._check_startable(snapshot_id, status),
            lambda data: _patch(data, status="running", start_ts=now.isoformat()),
            renew=self.renew_leases,
        )
        start = self._timer()
        try:
            yield
        except Exception as exc:
            fields = {"duration": self._timer() - start, "error": f"{type(exc).__name__}: {exc}"}
            await step.finish("error", lambda data: _patch(data, status="error", **fields))
            raise
        except BaseException:
            step.abandon()
            raise
        else:
            duration = self._timer() - start
            await step.finish(
                "success", lambda data: _patch(data, status="success", duration=duration)
            )

    # -- loading ------------------------------------------------------------------------

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Claim the oldest `created` snapshot (or one whose lease expired) as `pending`.

        The claim is atomic: two workers never get the same snapshot. The result is an
        independent copy with its id attached to its node.

        Raises:
            ConfigurationError: the graph's types are not set.
            IntegrityError: the record was tampered with or moved.
            KeyUnavailableError: its key is not in the key ring.
            SerializationError: it does not match the graph's types.
            StoreUnavailableError: the store failed.
        """
        self._types()  # fail before claiming, not after
        entry = await self._run.claim()
        if entry is None:
            return None
        snapshot = self._load(entry)
        if not isinstance(snapshot, NodeSnapshot):  # pragma: no cover - ends never claimable
            raise GraphRuntimeError(f"{entry.id.describe()}: claimed an end snapshot")
        return snapshot

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        """Every snapshot of the run, in insertion order (copies).

        Raises:
            ConfigurationError: the graph's types are not set.
            IntegrityError, KeyUnavailableError, SerializationError, StoreUnavailableError.
        """
        self._types()
        return [self._load(entry) for entry in await self.store.find(self._run.query())]

    # -- recovery -----------------------------------------------------------------------

    async def recover(self, *, only_expired: bool = False) -> int:
        """Requeue the snapshots of this run that a dead worker left behind.

        Snapshots left `pending` or `running` go back to `created` (their start time
        cleared), so `Graph.iter_from_persistence` resumes at once instead of after the
        lease expires. When the run's last snapshot is a node that succeeded but whose
        successor was never saved (the process died in between), that node is requeued
        too: it runs again from the state saved before it. Call this only when no live
        worker drives the run, or pass `only_expired=True` to requeue expired leases only.

        Returns:
            How many snapshots were requeued.

        Raises:
            ConflictError: too much contention on a snapshot to requeue it.
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        return await self._run.requeue(
            lambda data: _patch(data, status="created", start_ts=None, duration=None),
            only_expired=only_expired,
        )

    # -- operations -------------------------------------------------------------------

    @staticmethod
    async def list_runs(
        store: EncryptedStore,
        *,
        statuses: Collection[str] | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        _clock: Callable[[], float] = time.time,
    ) -> list[RunSummary]:
        """The pydantic-graph runs of the store's tenant, least recently updated first.

        Reads routing fields only, so it needs no key. It reads every snapshot record of
        the tenant: an operator's tool, not a hot path.

        Args:
            store: the record API (its tenant is listed).
            statuses: keep runs whose `RunSummary.status` is one of these
                (e.g. `{"stuck", "interrupted"}` to find runs to recover).
            older_than: keep runs not updated for this many seconds.
            limit: at most this many runs.

        Raises:
            StoreUnavailableError: the store failed.
        """
        return await list_runs(
            store,
            kind=KIND,
            namespace=_NAMESPACE,
            now=_clock(),
            statuses=statuses,
            older_than=older_than,
            limit=limit,
        )

    def __repr__(self) -> str:
        return f"StatePersistence(run_id={self.run_id!r}, store={self.store!r})"
