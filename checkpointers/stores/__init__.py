"""Storage backends. Each module holds one store class; import the backend you need.

`MemoryStore` and `SqliteStore` need no extra; `RedisStore`, `PostgresStore` and
`AzureBlobStore` import their driver and need the matching extra installed.
"""

from checkpointers.stores.base import Store
from checkpointers.stores.memory import MemoryStore
from checkpointers.stores.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store"]
