# examples/core.py: the framework-free core, any bytes (no extra needed on SQLite)
import asyncio
from pathlib import Path

from checkpointers import EncryptedStore, KeyRing
from checkpointers.crypto import create_key_file

URL = "sqlite:///checkpoints.db"  # or redis://..., postgresql://..., a list of tiers
KEY_FILE = Path("app.key")  # development key, mode 0600; production: Azure Key Vault
if not KEY_FILE.exists():  # as `checkpointers keys generate --file app.key` does
    create_key_file(KEY_FILE)
keys = KeyRing.from_key_file(KEY_FILE)


async def main() -> None:
    async with EncryptedStore.from_url(URL, keys=keys, tenant="acme") as store:
        record = store.record_id(thread="t-1", namespace="", kind="note", key="n-1")
        await store.put(record, b"any bytes", index={"topic": "billing"})
        entry = await store.get(record)
        assert entry is not None and entry.data == b"any bytes"
        billing = await store.find(store.query(tokens=await store.tokens({"topic": "billing"})))
        print([e.id.key for e in billing])  # ['n-1']


asyncio.run(main())
