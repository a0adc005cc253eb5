"""`TierStats`: the counters of a `TieredStore` (private module, public class).

Export them with `checkpointers.observability.Metrics.watch_tiers`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TierStats"]


@dataclass
class TierStats:
    """Counters for metrics.

    Attributes:
        hot_hits: point reads (`get`, `get_many`, per record) served by the hot tier.
        hot_misses: point reads of records the hot tier lacked and a colder tier held.
        absent_reads: point reads of records no tier holds (not misses: no cache could
            have served them).
        failovers: times the hot tier was found down and its breaker opened.
        archive_reads: records served by the archive (and `find`s answered by it).
    """

    hot_hits: int = 0
    hot_misses: int = 0
    absent_reads: int = 0
    failovers: int = 0
    archive_reads: int = 0

    @property
    def hit_ratio(self) -> float | None:
        """Share of point reads served by the hot tier; None before the first read."""
        total = self.hot_hits + self.hot_misses
        return None if total == 0 else self.hot_hits / total
