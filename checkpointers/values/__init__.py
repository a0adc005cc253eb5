"""Channel values for framework adapters: stored once per version, lists as appended tails.

A framework that saves snapshots of named channels, each at a version, stores the values
through a `ValueStore` and keeps only the versions in its snapshot record. The layout of
a value record (plaintext that `EncryptedStore` encrypts and binds to its identity):

* kind ``blob``; key ``[channel, version]`` as JSON (`value_key`); group: the key of
  the base blob when the value is stored as an appended tail, else "".
* body: `frame` of (mode ``F`` or ``T``, type tag, bytes, base key): ``F`` holds the
  whole value, ``T`` the list items appended to the value of the base blob.

The values become bytes through a `ValueCodec` that the adapter provides. `HeadCache`
remembers the newest snapshot per (thread, namespace) so that a reader can fetch its
values (`ValueStore.prefetch`) in the round trip that finds the newest snapshot.
"""

from checkpointers.values._format import frame, unframe, value_key, value_keys
from checkpointers.values._heads import Head, HeadCache
from checkpointers.values._lists import TAIL_CACHE_BYTES, TAIL_CACHE_SIZE, ListCache, ListState
from checkpointers.values._store import BLOB, MAX_TAIL_CHAIN, Prefetched, ValueCodec, ValueStore

__all__ = [
    "BLOB",
    "MAX_TAIL_CHAIN",
    "TAIL_CACHE_BYTES",
    "TAIL_CACHE_SIZE",
    "Head",
    "HeadCache",
    "ListCache",
    "ListState",
    "Prefetched",
    "ValueCodec",
    "ValueStore",
    "frame",
    "unframe",
    "value_key",
    "value_keys",
]
