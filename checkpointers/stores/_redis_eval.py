"""Sending `RedisStore`'s Lua scripts (private): EVALSHA, batched, pipelined, gated.

`Scripts.run` sends calls in chunks of `BATCH`, each chunk in one round trip: a
pipeline on one server (a MULTI transaction when `atomic`), concurrent requests on a
cluster (whose pipelines refuse EVALSHA). After NOSCRIPT (the server lost its script
cache) it loads the scripts and sends the chunk again. Retries and error translation
are the caller's (`checkpointers.stores._redis_errors`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from checkpointers.stores._redis_client import Client
from checkpointers.stores._redis_lua import SCRIPTS

__all__ = ["BATCH", "Call", "Scripts"]

BATCH = 200

#: One script call: its name, its key (the thread's key base) or keys, its arguments.
Call = tuple[str, str | tuple[str, ...], list[Any]]


def _keys(keys: str | tuple[str, ...]) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else keys


class Scripts:
    """The scripts of `SCRIPTS`, run by SHA on `client`.

    `gate` (set by `RedisStore.from_url` on a cluster) bounds the requests in flight.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._shas = {
            name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
            for name, src in SCRIPTS.items()
        }
        self.gate: asyncio.Semaphore | None = None

    async def load(self) -> None:
        for src in SCRIPTS.values():
            await self._client.script_load(src)

    async def run(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        """Run scripts in one round trip (a pipeline), loading them again after NOSCRIPT."""
        out: list[Any] = []
        for start in range(0, len(calls), BATCH):
            chunk = calls[start : start + BATCH]
            try:
                out += await self._send(chunk, atomic)
            except NoScriptError:
                # NOSCRIPT: the server lost its script cache (restart, flush), so no
                # script of the chunk ran; load them and send the chunk again.
                await self.load()
                out += await self._send(chunk, atomic)
        return out

    async def _send(self, calls: Sequence[Call], atomic: bool) -> list[Any]:
        results: list[Any]
        if len(calls) == 1:
            name, keys, args = calls[0]
            return [await self._gated(self._shas[name], _keys(keys), args)]
        if self._cluster:
            # Cluster pipelines refuse EVALSHA: send the calls at once, one per request.
            # A failure is retried whole by `RedisStore._io` (every call is safe to repeat), so a
            # listing step that failed next to a write that succeeded is sent again.
            sent = [self._gated(self._shas[n], _keys(k), args) for n, k, args in calls]
            results = list(await asyncio.gather(*sent, return_exceptions=True))
        else:
            pipe = self._client.pipeline(transaction=atomic)
            for name, keys, args in calls:
                pipe.evalsha(self._shas[name], len(_keys(keys)), *_keys(keys), *args)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _gated(self, sha: str, keys: tuple[str, ...], args: list[Any]) -> Any:
        """EVALSHA on a cluster, waiting for a connection when `pool_size` are busy.

        RedisCluster raises instead of waiting when its per-node pool is exhausted; this
        semaphore is that pool's wait queue, not a lock around the I/O.
        """
        if self.gate is None:
            return await self._client.evalsha(sha, len(keys), *keys, *args)
        async with self.gate:
            return await self._client.evalsha(sha, len(keys), *keys, *args)
