"""Envelope cost: encrypt+decrypt of 1 KiB and 64 KiB bodies, with and without zstd, and
its share of a SQLite put+get round trip. Prints a Markdown table of ratios.

    python benchmarks/crypto_overhead.py
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from checkpointers import EncryptedStore, KeyRing, LocalKey, RecordId, SqliteStore

ROUNDS = 300


def chat_like(size: int) -> bytes:
    """Compressible text resembling a JSON message list."""
    rng = random.Random(size)
    words = ["the", "agent", "called", "tool", "search", "result", "user", "asked", "about"]
    messages = []
    while len(json.dumps(messages)) < size:
        messages.append({"role": "assistant", "content": " ".join(rng.choices(words, k=40))})
    return json.dumps(messages).encode()[:size]


async def median_us(fn: Callable[[], Awaitable[object]]) -> float:
    for _ in range(20):
        await fn()
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


async def main() -> None:
    aad = RecordId("t", "thread", "", "checkpoint", "c1").aad()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in (("1 KiB", 1024), ("64 KiB", 64 * 1024)):
            for compress in (False, True):
                body = chat_like(size) if compress else os.urandom(size)
                threshold = 1 << 30 if not compress else 512
                ring = KeyRing([LocalKey(b"k" * 32)], compress_threshold=threshold)
                blob = await ring.encrypt(body, aad)

                async def crypto(ring: KeyRing = ring, body: bytes = body) -> None:
                    await ring.decrypt(await ring.encrypt(body, aad), aad)

                store = SqliteStore(Path(tmp) / f"{label}-{compress}.db")
                enc = EncryptedStore(store, ring)
                rid = enc.record_id("thread", "", "checkpoint", "c1")

                async def round_trip(
                    enc: EncryptedStore = enc, body: bytes = body, rid: RecordId = rid
                ) -> None:
                    await enc.put(rid, body)
                    await enc.get(rid)

                crypto_us = await median_us(crypto)
                trip_us = await median_us(round_trip)
                await store.aclose()
                rows.append((label, "zstd" if compress else "none", crypto_us, trip_us,
                             len(blob) / size))  # fmt: skip
    print(
        "| body | compression | encrypt+decrypt µs | sqlite put+get µs | crypto share "
        "| stored/raw |"
    )
    print("|---|---|---|---|---|---|")
    for label, comp, crypto_us, trip_us, ratio in rows:
        print(f"| {label} | {comp} | {crypto_us:.1f} | {trip_us:.1f} | "
              f"{crypto_us / trip_us:.0%} | {ratio:.2f} |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
