"""Tiers of stores behaving as one: hot (Redis) over durable (PostgreSQL or SQLite) over
archive (Azure Blob). See `TieredStore`.
"""

from checkpointers.tiered._compare import ThreadReport, TierDigest
from checkpointers.tiered._stats import TierStats
from checkpointers.tiered._store import TieredStore
from checkpointers.tiered._write_behind import Backoff

__all__ = ["Backoff", "ThreadReport", "TierDigest", "TierStats", "TieredStore"]
