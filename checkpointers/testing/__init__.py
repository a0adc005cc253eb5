"""Test helpers for users and for third-party stores.

* `deterministic_key_ring(seed)`: a key ring with reproducible keys.
* `StoreContract`: the shared store suite. Subclass it in a pytest module and provide a
  `store` fixture that yields a fresh, set-up store; every store of this package passes it.
* `MemoryStore` is re-exported: the reference store, for fast tests of your own code.

Needs pytest and pytest-asyncio (the `test` extra).
"""

from checkpointers.stores.memory import MemoryStore
from checkpointers.testing._keys import deterministic_key_ring
from checkpointers.testing._store_contract import StoreContract

__all__ = ["MemoryStore", "StoreContract", "deterministic_key_ring"]
