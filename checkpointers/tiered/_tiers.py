"""What the parts of a `TieredStore` share: its tiers, settings and write queue (private).

`TieredStore` owns one `Tiers` and hands it to its parts (reads, writes, the archive
mover, the consistency check), which use nothing else of the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from checkpointers.record import RecordId
from checkpointers.stores.base import Store
from checkpointers.tiered._hot import HotTier
from checkpointers.tiered._stats import TierStats
from checkpointers.tiered._write_behind import WriteQueue

__all__ = ["Tiers"]


@dataclass(eq=False)
class Tiers:
    """The tiers of a `TieredStore` and the state its parts share.

    Attributes:
        durable: the source of truth.
        hot: the hot tier behind its guard (its `store` is None when there is none).
        archive: the long-term tier, or None.
        stats: the store's counters.
        archive_retention: expiry given to archived copies (None: never).
        restore_on_read: restore a thread found only in the archive on first read.
        queue: write-behind: the queued writes (None in write-through mode).
        pending_ttl: write-behind: the expiry of a queued write's hot copy, in seconds.
    """

    durable: Store
    hot: HotTier
    archive: Store | None
    stats: TierStats
    archive_retention: float | None
    restore_on_read: bool
    queue: WriteQueue | None = None
    pending_ttl: float = 0.0

    def pending(self, tenant: str | None = None, thread: str | None = None) -> bool:
        """Whether a write of this tenant and thread (None: any) is queued."""
        queue = self.queue
        if queue is None or not queue.latest:
            return False
        return any((tenant is None or rid.tenant == tenant) and
                   (thread is None or rid.thread == thread) for rid in queue.latest)  # fmt: skip

    async def flush_if(self, pending: bool) -> None:
        """Flush the queue when `pending`: before the durable tier decides or answers."""
        if pending and self.queue is not None:
            await self.queue.flush()

    @contextlib.asynccontextmanager
    async def dropping_queued(self, doomed: Callable[[RecordId], bool]) -> AsyncIterator[None]:
        """Drop queued writes that a delete removes, holding off flushes meanwhile."""
        if self.queue is None:
            yield
            return
        async with self.queue.exclusive():
            self.queue.discard(doomed)
            yield
