"""A child process for tests/stores/test_postgres_processes.py: one PostgresStore, its own pool.

Usage: ``python -m tests.stores._postgres_worker MODE DSN SCHEMA [N]`` where MODE is

- ``setup``: call ``setup()``;
- ``cas``: N rounds of read + compare-and-set on one record (a counter in its body);
- ``claim``: N concurrent tasks claiming items of thread "run" until none is left.

The worker opens its pool first, prints ``ready``, waits for a line on stdin (the parent
releases every worker at once), runs, then prints one JSON line with what it did. Any
exception other than the ones the mode expects ends it with a traceback and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from checkpointers.errors import ConflictError
from checkpointers.record import Claim, Record, RecordId
from checkpointers.stores.postgres import PostgresStore

CAS_ID = RecordId("acme", "counter", "", "doc", "c")
CLAIM = Claim("acme", "run", "doc", ("created",), "pending")


async def _released() -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


async def _setup(store: PostgresStore, _n: int) -> dict[str, Any]:
    started = time.time()
    await store.setup()
    return {"started": started, "ended": time.time()}


async def _cas(store: PostgresStore, rounds: int) -> dict[str, Any]:
    won: list[int] = []
    conflicts = 0
    for _ in range(rounds):
        current = await store.get(CAS_ID)
        assert current is not None
        body = str(int(current.body) + 1).encode()
        try:
            won.append(
                await store.put(Record(id=CAS_ID, body=body), expected_version=current.version)
            )
        except ConflictError:
            conflicts += 1
    return {"won": won, "conflicts": conflicts}


async def _claim(store: PostgresStore, tasks: int) -> dict[str, Any]:
    async def claimer() -> list[str]:
        taken = []
        while (got := await store.claim(CLAIM)) is not None:
            taken.append(got.id.key)
        return taken

    batches = await asyncio.gather(*(claimer() for _ in range(tasks)))
    return {"claimed": [key for batch in batches for key in batch]}


MODES = {"setup": _setup, "cas": _cas, "claim": _claim}


async def main(mode: str, dsn: str, schema: str, n: int) -> None:
    # Not `async with`: entering a store runs setup(), which the setup workers must race.
    store = PostgresStore.from_url(dsn, schema=schema, pool_min=1, pool_max=10)
    try:
        # Open the pool before the start line, so that the workers race on the work only
        # (ping needs no table: it works on the empty database).
        await store.ping()
        await _released()
        result = await MODES[mode](store, n)
    finally:
        await store.aclose()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
