"""`TieredStore`: hot (Redis) over durable (PostgreSQL or SQLite) over archive (Blob).

* Writes go to the durable tier (the source of truth, where compare-and-set is decided),
  then to the hot tier with the durable row version and a short TTL (write-through).
* Reads try hot, then durable (and repopulate hot), then archive.
* A hot tier that fails is skipped by a circuit breaker: the run continues on the durable
  tier, a warning is logged and `failovers` counts it. Records written while the hot tier
  was unreachable are remembered and evicted from it before it is used again, so it never
  serves a stale copy. A durable tier that fails raises `StoreUnavailableError`: a write
  is never acknowledged unless it is durable.
* `archive_thread` copies a thread to the archive, reads it back and compares digests
  before deleting it from the warmer tiers; `restore_thread` brings it back.
* Write-behind (opt-in, `write_behind=True`): writes are acknowledged once in the hot
  tier and queued; a background task flushes them to the durable tier in batches. A
  crash loses what was not flushed yet (see `TieredStore`).
* Copies between tiers use `Store.replicate`, which never goes back in row version: of
  concurrent writes of one record, an older copy arriving last cannot replace a newer one.
* `compare_thread` compares a thread across tiers (counts, digests, latest ids, and the
  differing records) and, when asked, repairs the warmer tiers from the truth (see
  `checkpointers.tiered._compare` for which tier is the truth).
* Deletes and sweeps reach every tier.
* `stats` (`TierStats`) counts hot hits and misses, failovers and archive reads; export
  them with `checkpointers.observability.Metrics.watch_tiers`.

Queries (`find`, `latest`, `threads`) are answered by the durable tier, the only complete
index (the hot tier holds what was recently written or read, not whole threads); the hot
tier serves point reads (`get`, `get_many`), which are what the hit ratio measures.

The parts (hot tier, reads, writes, archive mover, consistency check) are private
modules of this package that share one `Tiers`, never the store itself.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

from checkpointers.errors import ConfigurationError, StoreUnavailableError
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.resilience import CircuitBreaker
from checkpointers.stores.base import Store
from checkpointers.tiered import _archive, _deletes, _reads, _verify, _writes
from checkpointers.tiered._compare import ThreadReport
from checkpointers.tiered._hot import HotTier
from checkpointers.tiered._stats import TierStats
from checkpointers.tiered._tiers import Tiers
from checkpointers.tiered._urls import stores_from_urls
from checkpointers.tiered._write_behind import (
    Backoff,
    WriteQueue,
    merge_pending,
    pending_in_scope,
    widen,
)

__all__ = ["TieredStore"]

DEFAULT_HOT_TTL = 24 * 3600.0
DEFAULT_ARCHIVE_RETENTION = 7 * 365 * 24 * 3600.0


def _hot_breaker() -> CircuitBreaker:
    """The default breaker of a hot tier: open at the first failure (the durable tier
    serves meanwhile), probe again after two seconds."""
    return CircuitBreaker(failure_threshold=1, reset_after=2.0)


class TieredStore(Store):
    """Tiers of stores behaving as one store.

    Write-behind mode (``write_behind=True``; **off by default**): a write without
    `expected_version` is acknowledged once it is in the hot tier, and queued. A
    background task writes the queue to the durable tier, one `put_many` per batch, at
    least every `flush_interval` seconds and at once when `max_pending` writes wait;
    `flush()` and `aclose()` flush too. **A crash (the process dies, or the store is
    dropped without `aclose()`) loses every write not yet flushed: at most the last
    `flush_interval` seconds of writes (longer only while the durable tier is failing,
    when writes are refused), and about `max_pending` of them** (a writer that finds
    `max_pending` queued flushes first; writes already on their way to the queue then
    still join it). Whatever was flushed is durable. Hot
    copies of lost writes expire after `max(60 s, 10 flush_interval)`, as every queued
    write's hot copy does until its flush. Other rules:

    * reads see queued writes (the queue first, then hot, then durable); queries merge
      the queued records into the durable tier's answer;
    * compare-and-set writes (`expected_version`) and claims go straight to the durable
      tier, after flushing queued writes of their record or thread: only the durable
      tier can decide them (a queued write cannot report a conflict with another
      process's write, and the caller must learn of it before acting on the outcome);
    * an insert-if-absent is decided by the durable tier when flushed: if it held the
      record, the queued copy is dropped and evicted from the hot tier;
    * the row versions a queued write returns are the hot tier's; they are those of the
      durable tier unless the hot tier lacked a record the durable one held, in which
      case a compare-and-set with them raises `ConflictError` (read again and retry);
    * when a flush fails (durable tier down), the batch stays queued and is retried with
      backoff, a failover event is logged, and every write and `aclose()` raises
      `StoreUnavailableError` until a flush succeeds: nothing is dropped silently;
    * when the hot tier is unreachable, writes go through to the durable tier (after the
      queue is flushed), as in write-through mode;
    * deletes drop queued writes of what they delete.

    Args:
        durable: the source of truth (required).
        hot: a fast cache tier (Redis), or None.
        archive: the long-term tier (Azure Blob), or None.
        hot_ttl: seconds a record stays in the hot tier (default 24 h).
        archive_retention: expiry given to archived copies (default 7 years).
        restore_on_read: when a read finds a thread only in the archive, restore it into
            the durable tier first (default). Without it a thread written again after
            archiving shows only its new records, and values the new records share with
            archived ones are not found: turn it off only for read-only archive access.
        breaker: circuit breaker of the hot tier (default: opens at the first failure,
            probes again after 2 s).
        owns_stores: close the tiers on `aclose()` (set by `from_urls`).
        write_behind: acknowledge writes once in the hot tier, flush them later (see
            above; needs a hot tier).
        flush_interval: write-behind: seconds between flushes, at most.
        max_pending: write-behind: queued writes that trigger a flush at once.
        flush_backoff: write-behind: delays between retries of a failed flush.

    Raises:
        ConfigurationError: write-behind without a hot tier, or a non-positive
            `flush_interval` or `max_pending`.
    """

    def __init__(
        self,
        durable: Store,
        *,
        hot: Store | None = None,
        archive: Store | None = None,
        hot_ttl: float = DEFAULT_HOT_TTL,
        archive_retention: float | None = DEFAULT_ARCHIVE_RETENTION,
        restore_on_read: bool = True,
        breaker: CircuitBreaker | None = None,
        owns_stores: bool = False,
        write_behind: bool = False,
        flush_interval: float = 1.0,
        max_pending: int = 1000,
        flush_backoff: Backoff | None = None,
    ) -> None:
        stats = TierStats()
        hot_tier = HotTier(hot, ttl=hot_ttl, breaker=breaker or _hot_breaker(), stats=stats)
        self._tiers = Tiers(durable, hot_tier, archive, stats, archive_retention, restore_on_read)
        self._owns_stores = owns_stores
        self._owned_resources = owns_stores
        if write_behind:
            if hot is None:
                raise ConfigurationError("write-behind needs a hot tier")
            if not flush_interval > 0 or max_pending < 1:
                raise ConfigurationError("flush_interval and max_pending must be positive")
            self._tiers.queue = WriteQueue(
                self._flush_write,
                functools.partial(_writes.flushed, self._tiers),
                flush_interval=flush_interval,
                max_pending=max_pending,
                backoff=flush_backoff,
            )
            self._tiers.pending_ttl = min(hot_ttl, max(60.0, 10 * flush_interval))

    @classmethod
    def from_urls(
        cls, urls: Sequence[str], *, credential: Any = None, **options: Any
    ) -> tuple[TieredStore, dict[str, Any]]:
        """Tiers from URLs, hottest first: Blob URLs are the archive, the last other URL
        is durable (PostgreSQL, SQLite) and one URL above it is hot (Redis). Common
        options must agree. `credential` (an azure-core `AsyncTokenCredential`,
        borrowed: never closed) goes to every tier whose store takes one: PostgreSQL and
        Redis (Microsoft Entra ID tokens as passwords) and the Azure Blob archive; other
        keyword options go to every tier.

        Raises:
            ConfigurationError: no durable tier, two of a kind, conflicting options, or
                `credential` while no tier takes one (SQLite, memory only).
        """
        tiers, common = stores_from_urls(urls, credential=credential, **options)
        tiered = cls(
            tiers["durable"], hot=tiers.get("hot"), archive=tiers.get("archive"), owns_stores=True
        )
        return tiered, common

    # -- the tiers and settings, kept in the parts they configure --------------------------

    @property
    def durable(self) -> Store:
        """The source of truth."""
        return self._tiers.durable

    @durable.setter
    def durable(self, store: Store) -> None:
        self._tiers.durable = store

    @property
    def hot(self) -> Store | None:
        """The hot tier, or None."""
        return self._tiers.hot.store

    @hot.setter
    def hot(self, store: Store | None) -> None:
        self._tiers.hot.store = store

    @property
    def archive(self) -> Store | None:
        """The archive tier, or None."""
        return self._tiers.archive

    @archive.setter
    def archive(self, store: Store | None) -> None:
        self._tiers.archive = store

    @property
    def hot_ttl(self) -> float:
        """Seconds a record stays in the hot tier."""
        return self._tiers.hot.ttl

    @hot_ttl.setter
    def hot_ttl(self, seconds: float) -> None:
        self._tiers.hot.ttl = seconds

    @property
    def archive_retention(self) -> float | None:
        """Expiry given to archived copies, in seconds (None: never)."""
        return self._tiers.archive_retention

    @archive_retention.setter
    def archive_retention(self, seconds: float | None) -> None:
        self._tiers.archive_retention = seconds

    @property
    def restore_on_read(self) -> bool:
        """Whether a read that finds a thread only in the archive restores it first."""
        return self._tiers.restore_on_read

    @restore_on_read.setter
    def restore_on_read(self, restore: bool) -> None:
        self._tiers.restore_on_read = restore

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker of the hot tier."""
        return self._tiers.hot.breaker

    @breaker.setter
    def breaker(self, breaker: CircuitBreaker) -> None:
        self._tiers.hot.breaker = breaker

    @property
    def stats(self) -> TierStats:
        """Counters for metrics (hot hits and misses, failovers, archive reads)."""
        return self._tiers.stats

    @stats.setter
    def stats(self, stats: TierStats) -> None:
        self._tiers.stats = self._tiers.hot.stats = stats

    @property
    def _queue(self) -> WriteQueue | None:
        # Write-behind's queue (None in write-through mode); tests drive it.
        return self._tiers.queue

    # -- protocol -------------------------------------------------------------------------

    async def setup(self) -> None:
        await self.durable.setup()
        if self.hot is not None:
            await self._tiers.hot.run(lambda hot: hot.setup(), "setup")
        if self.archive is not None:
            await self.archive.setup()

    async def get(self, record_id: RecordId) -> Record | None:
        return (await self.get_many([record_id]))[0]

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        """Queued writes first (write-behind), then the hot tier; the misses from the
        durable tier in one call (then copied to the hot tier); what is still missing
        from the archive, for threads the durable tier holds nothing of (archived
        threads: a live thread's absent record is not looked up in the archive, which is
        slow)."""
        return await _reads.get_many(self._tiers, record_ids)

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        """Write-through (or, in write-behind mode without `expected_version`, queued).

        Raises:
            ConflictError: `expected_version` did not match the durable tier.
            StoreUnavailableError: the durable tier failed (now, or a queued flush).
        """
        queue = self._queue
        if queue is not None:
            if expected_version is None:
                (version,) = await self.put_many([record])
                assert version is not None  # an upsert always writes
                return version
            if record.id in queue.latest:
                await queue.flush()
        version = await self.durable.put(record, expected_version=expected_version)
        if self.hot is not None:
            stored = record.stored_as(version, time.time())
            await self._tiers.hot.put([stored], "put")
        return version

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        """Write to the durable tier, then copy exactly the records it wrote, with the
        versions it answered, to the hot tier (no read back). A record `if_absent` left
        as it was (None) is not copied: the durable copy differs from it.

        In write-behind mode: write to the hot tier and queue (see the class).

        Raises:
            StoreUnavailableError: the durable tier failed (now, or a queued flush).
        """
        if self._queue is not None and records:
            return await _writes.put_behind(self._tiers, records, if_absent)
        return await _writes.put_through(self._tiers, records, if_absent)

    async def _flush_write(self, records: list[Record], if_absent: bool) -> list[int | None]:
        return await self.durable.put_many(records, if_absent=if_absent)

    async def flush(self) -> int:
        """Write-behind: write every queued write to the durable tier now; returns how
        many were written (0 in write-through mode).

        Raises:
            StoreUnavailableError: the durable tier failed; the writes stay queued.
        """
        return 0 if self._queue is None else await self._queue.flush()

    async def replicate(self, records: Sequence[Record]) -> None:
        queue = self._queue
        await self._tiers.flush_if(queue is not None and any(r.id in queue.latest for r in records))
        # The durable tier may have kept a higher version than a copy given here: the hot
        # tier gets what the durable tier holds now.
        await self.durable.replicate(records)
        await self._tiers.hot.put_from(self.durable, [r.id for r in records], "replicate")

    async def find(self, query: Query) -> list[Record]:
        queue = self._queue
        pending = {} if queue is None else pending_in_scope(query, queue.latest)
        if pending:
            durable = await self.durable.find(widen(query, len(pending)))
            return merge_pending(query, durable, pending)
        found = await self.durable.find(query)
        if found or self.archive is None or query.thread is None:
            return found
        self.stats.archive_reads += 1
        archived = await self.archive.find(query)
        if archived and self.restore_on_read and query.tenant is not None:
            await self.restore_thread(query.tenant, query.thread)
            return await self.durable.find(query)
        return archived

    async def claim(self, claim: Claim) -> Record | None:
        await self._tiers.flush_if(self._tiers.pending(claim.tenant, claim.thread))
        claimed = await self.durable.claim(claim)
        if claimed is not None:
            await self._tiers.hot.put([claimed], "claim")
        return claimed

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        return await _deletes.delete(self._tiers, record_ids)

    async def delete_thread(self, tenant: str, thread: str) -> int:
        return await _deletes.delete_thread(self._tiers, tenant, thread)

    async def delete_tenant(self, tenant: str) -> int:
        return await _deletes.delete_tenant(self._tiers, tenant)

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        await self._tiers.flush_if(self._tiers.pending(tenant))
        return await self.durable.threads(tenant, after=after, limit=limit)

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        await self._tiers.flush_if(self._tiers.pending())
        return await self.durable.scan(after, limit=limit)

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        count = await self.durable.sweep(now=now, limit=limit)
        await self._tiers.hot.run(lambda hot: hot.sweep(now=now, limit=limit), "sweep")
        if self.archive is not None:
            count += await self.archive.sweep(now=now, limit=limit)
        return count

    async def is_set_up(self) -> bool:
        return await self.durable.is_set_up()

    async def ping(self) -> None:
        await self.durable.ping()
        if self.archive is not None:
            await self.archive.ping()

    async def tier_health(self) -> dict[str, str]:
        """Each tier's state: "ok", "down" or "open" (skipped by the breaker)."""
        health: dict[str, str] = {}
        for name, tier in (("hot", self.hot), ("durable", self.durable),
                           ("archive", self.archive)):  # fmt: skip
            if tier is None:
                continue
            try:
                await tier.ping()
                health[name] = "ok"
            except StoreUnavailableError:
                health[name] = "down"
        if self.hot is not None and self.breaker.is_open:
            health["hot"] = "open"
        return health

    # -- archive --------------------------------------------------------------------------

    async def archive_thread(self, tenant: str, thread: str) -> int:
        """Move a thread to the archive: copy, read back, compare digests, then delete it
        from the durable and hot tiers. Returns how many records moved.

        Raises:
            RecordNotFoundError: the thread has no records in the durable tier.
            IntegrityError: the archived copy differs (nothing is deleted then).
        """
        return await _archive.archive_thread(self._tiers, tenant, thread)

    async def restore_thread(self, tenant: str, thread: str) -> int:
        """Copy an archived thread back into the durable tier (the archive keeps it).

        A durable record with a higher row version than its archived copy (the thread was
        written to after an earlier restore) is kept: a restore never goes back in version.

        Raises:
            RecordNotFoundError: the archive has no such thread.
            IntegrityError: the restored copy differs from the archive.
        """
        return await _archive.restore_thread(self._tiers, tenant, thread)

    async def compare_thread(
        self, tenant: str, thread: str, *, repair: bool = False
    ) -> ThreadReport:
        """Compare a thread across the tiers; with `repair`, fix the warmer tiers.

        The durable tier is the truth when it holds the thread, else the archive (an
        archived thread). Hot copies that differ from the truth, or that the truth lacks,
        are reported and, with `repair`, evicted (the hot tier is a cache: evicting is
        always safe). When the durable tier and the archive both hold the thread, archive
        copies that differ, are extra or are missing are reported and, with `repair`, the
        thread is archived again from the durable tier (differing and extra copies are
        deleted first, then the durable records copied and verified). Run it on idle
        threads: a write racing the comparison can show up as a difference (repairing
        it only evicts a hot copy or re-copies the durable state).

        Raises:
            StoreUnavailableError: the durable tier or the archive failed.
            IntegrityError: the archive copy written by the repair differs on read-back.
        """
        return await _verify.compare_thread(self._tiers, tenant, thread, repair)

    async def archive_idle(self, tenant: str | None, *, idle_seconds: float) -> int:
        """Archive every thread whose newest record is older than `idle_seconds`."""
        return await _archive.archive_idle(self._tiers, tenant, idle_seconds)

    async def aclose(self) -> None:
        """Flush queued writes (write-behind), then close what this store owns.

        Raises:
            StoreUnavailableError: the flush failed; the store stays open with the writes
                queued (call `aclose()` again once the durable tier is back).
        """
        queue = self._queue
        if queue is not None and not self._closed:
            await queue.stop()
            try:
                await queue.flush()
            except BaseException:
                if len(queue):
                    queue.start()  # still open: keep retrying in the background
                raise
        await super().aclose()

    async def _close(self) -> None:
        if self._owns_stores:
            for tier in (self.hot, self.durable, self.archive):
                if tier is not None:
                    await tier.aclose()

    def __repr__(self) -> str:
        tiers = (("hot", self.hot), ("durable", self.durable), ("archive", self.archive))
        names = [f"{name}={type(tier).__name__}" for name, tier in tiers if tier is not None]
        return f"TieredStore({', '.join(names)})"
