"""checkpointers: encrypted, durable checkpoints for LangGraph and pydantic-graph.

The core is framework-free: `EncryptedStore` writes records encrypted with a `KeyRing`
into a `Store` (memory, SQLite, Redis, PostgreSQL, Azure Blob, or tiers of them).
The framework adapters are `checkpointers.langgraph`, `checkpointers.pydantic_graph` and
`checkpointers.pydantic_ai` (each needs its extra installed).
"""

from checkpointers._layout import source_tree_adapters
from checkpointers.crypto import KeyEncryptionKey, KeyRing, LocalKey
from checkpointers.encrypted import DEFAULT_TENANT, EncryptedStore, Entry, Write
from checkpointers.errors import (
    CheckpointersError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    KeyUnavailableError,
    MissingDependencyError,
    RecordNotFoundError,
    RecordTooLargeError,
    SerializationError,
    StoreUnavailableError,
)
from checkpointers.portal import Portal
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores import MemoryStore, SqliteStore, Store
from checkpointers.urls import open_store

__version__ = "0.1.0"

# In a source checkout (and an editable install) the adapters live in the repository's
# top-level `adapters/` folder; a wheel installs them inside this package instead.
__path__ = [*__path__, *source_tree_adapters(__path__)]

__all__ = [
    "DEFAULT_TENANT",
    "CheckpointersError",
    "Claim",
    "ConfigurationError",
    "ConflictError",
    "EncryptedStore",
    "Entry",
    "IntegrityError",
    "KeyEncryptionKey",
    "KeyRing",
    "KeyUnavailableError",
    "LocalKey",
    "MemoryStore",
    "MissingDependencyError",
    "Portal",
    "Query",
    "Record",
    "RecordId",
    "RecordNotFoundError",
    "RecordTooLargeError",
    "SerializationError",
    "SqliteStore",
    "Store",
    "StoreUnavailableError",
    "Write",
    "open_store",
]
