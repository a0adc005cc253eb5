"""Scenario 6: checkpoint put/get latency and throughput at several concurrencies, and round
trips per operation.

Operations go through the LangGraph saver API, the same calls for ours and the peers:
`aput` of a checkpoint holding one new 1 KiB channel value (a new channel version each
time, so every put writes a blob) and `aget_tuple` of a thread's latest checkpoint. At
concurrency c, c workers each own one thread and do `ops // c` puts one after the other
(each chained to the previous), then the same number of gets; p50/p99 are per call,
throughput is calls / wall time of the phase.

Round trips are counted with a TCP proxy on 127.0.0.1 between a second saver (opened on
the same database or prefix through the proxy) and the server: one round trip is one
client->server flight, a burst of client bytes after the server last spoke on that
connection (a pipelined batch is one flight). They are counted over sequential puts and
gets after a warm-up, so connection setup is not included. Alongside, what the server says
over the same calls: Redis `INFO commandstats` (commands executed, including those a Lua
script runs; server-wide, so other clients of the same server during the run would inflate
it) and PostgreSQL `pg_stat_statements` calls of the configuration's database when the
extension is loaded. It is not on the benchmark machine (not in
`shared_preload_libraries`), and the fallback the brief named, the `xact_commit` delta of
`pg_stat_database`, proved unusable over windows of seconds: PostgreSQL 15 backends
publish their counters lazily (up to 10 s after the work), so a window caught part of
the previous one. The proxy therefore also counts PostgreSQL statements on the wire
(Query and Execute messages), which is what pg_stat_statements would count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from benchmarks._env import Env
from benchmarks._stats import chat_text, summary_ms
from benchmarks._targets import open_at

# -- workload -----------------------------------------------------------------------------


class _Writer:
    """Builds chained 1 KiB checkpoints for one thread, in the saver's version format."""

    def __init__(self, saver: Any, thread_id: str, payloads: list[str]) -> None:
        self.saver = saver
        self.config: dict[str, Any] = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ""}
        }
        self.version: Any = None
        self.step = 0
        self.payloads = payloads

    async def put(self) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        self.version = self.saver.get_next_version(self.version, None)
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"payload": self.payloads[self.step % len(self.payloads)]}
        checkpoint["channel_versions"] = {"payload": self.version}
        metadata = {"source": "loop", "step": self.step, "parents": {}}
        self.step += 1
        self.config = await self.saver.aput(
            self.config, checkpoint, metadata, {"payload": self.version}
        )

    async def get(self) -> None:
        thread = self.config["configurable"]["thread_id"]
        found = await self.saver.aget_tuple({"configurable": {"thread_id": thread}})
        if found is None or "payload" not in found.checkpoint["channel_values"]:
            raise AssertionError(f"{thread}: the latest checkpoint is missing")


async def _phase(writers: list[_Writer], per_worker: int, op: str) -> tuple[list[float], float]:
    samples: list[float] = []

    async def worker(w: _Writer) -> None:
        call = w.put if op == "put" else w.get
        for _ in range(per_worker):
            start = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in writers))
    return samples, time.perf_counter() - start


async def latency(
    saver: Any, *, concurrencies: tuple[int, ...], ops: int, payload_bytes: int
) -> dict[str, Any]:
    """Put then get phases at each concurrency; `ops` calls per phase (at least 2 per
    worker)."""
    payloads = [chat_text(payload_bytes, seed) for seed in range(31)]
    warm = _Writer(saver, "warmup", payloads)
    for _ in range(5):
        await warm.put()
        await warm.get()
    out: dict[str, Any] = {}
    for c in concurrencies:
        per_worker = max(2, ops // c)
        writers = [_Writer(saver, f"c{c}-w{w}", payloads) for w in range(c)]
        level: dict[str, Any] = {"concurrency": c, "calls_per_phase": per_worker * c}
        for op in ("put", "get"):
            samples, wall = await _phase(writers, per_worker, op)
            level[op] = {**summary_ms(samples), "wall_s": wall, "per_s": len(samples) / wall}
        out[str(c)] = level
    return out


# -- round trips --------------------------------------------------------------------------


class _PgMessages:
    """Counts the statements a PostgreSQL client sends (Query 'Q' and Execute 'E'
    messages of the v3 frontend protocol; no TLS on 127.0.0.1)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.started = False

    def feed(self, data: bytes) -> int:
        self.buffer += data
        count = 0
        while True:
            if not self.started:  # SSLRequest / GSSENCRequest / StartupMessage: untyped
                if len(self.buffer) < 8:
                    return count
                length = int.from_bytes(self.buffer[:4], "big")
                code = int.from_bytes(self.buffer[4:8], "big")
                if len(self.buffer) < length:
                    return count
                self.buffer = self.buffer[length:]
                self.started = code == 196608
                continue
            if len(self.buffer) < 5:
                return count
            length = int.from_bytes(self.buffer[1:5], "big")
            if len(self.buffer) < 1 + length:
                return count
            count += self.buffer[:1] in (b"Q", b"E")
            self.buffer = self.buffer[1 + length :]


class FlightProxy:
    """A TCP proxy on 127.0.0.1 that counts client->server flights per connection (and,
    for PostgreSQL, the statements in them)."""

    def __init__(self, host: str, port: int, *, postgres: bool = False) -> None:
        self.target = (host, port)
        self.postgres = postgres
        self.flights = 0
        self.statements = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> FlightProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        last = ["server"]  # who spoke last on this connection
        messages = _PgMessages() if self.postgres else None

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, who: str) -> None:
            try:
                while data := await src.read(65536):
                    if who == "client":
                        if last[0] != "client":
                            self.flights += 1
                        if messages is not None:
                            self.statements += messages.feed(data)
                    last[0] = who
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, "client")),
            asyncio.create_task(pump(up_reader, writer, "server")),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 6379 if parts.scheme.startswith("redis") else 5432
    return parts.hostname or "127.0.0.1", parts.port or default


def _via(url: str, proxies: dict[tuple[str, int], FlightProxy]) -> str:
    host, port = _host_port(url)
    proxy = proxies[(host, port)]
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    hostport = f"127.0.0.1:{proxy.port}"
    new = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
    return parts._replace(netloc=new).geturl()


@asynccontextmanager
async def _proxied(name: str, where: Any) -> AsyncIterator[tuple[Any, list[FlightProxy]]]:
    urls = [where] if isinstance(where, str) else list(where)
    proxies: dict[tuple[str, int], FlightProxy] = {}
    try:
        for url in urls:
            key = _host_port(url)
            if key not in proxies:
                postgres = url.startswith("postgres")
                proxies[key] = await FlightProxy(*key, postgres=postgres).start()
        routed: Any = [_via(u, proxies) for u in urls]
        async with open_at(name, routed[0] if isinstance(where, str) else routed) as saver:
            yield saver, list(proxies.values())
    finally:
        for proxy in proxies.values():
            await proxy.aclose()


class ServerCounter:
    """What the server counts over a window: Redis `INFO commandstats` calls (server-wide),
    PostgreSQL `pg_stat_statements` calls of the configuration's database when the
    extension is loaded (it is not in `shared_preload_libraries` on the benchmark machine;
    then the proxy's count of Query/Execute messages stands in)."""

    def __init__(self, env: Env, where: Any) -> None:
        urls = [where] if isinstance(where, str) else list(where)
        self.env = env
        self.redis = any(u.startswith("redis") for u in urls)
        self.pg_db = next(
            (urlsplit(u).path.lstrip("/") for u in urls if u.startswith("postgres")), None
        )
        self.pg_statements = False
        self._redis: Any = None

    async def setup(self) -> None:
        if self.redis:
            import redis.asyncio as aioredis

            # One connection for the whole window, so that only its INFO calls (left out)
            # are added to the counts.
            self._redis = aioredis.Redis.from_url(self.env.redis_url)
            await self._redis.ping()
        if self.pg_db is None:
            return
        import asyncpg

        conn = await asyncpg.connect(_db_url(self.env.postgres_url, self.pg_db))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.fetchval("SELECT count(*) FROM pg_stat_statements")
            self.pg_statements = True
        except Exception:
            self.pg_statements = False
        finally:
            await conn.close()

    async def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._redis is not None:
            stats = await self._redis.info("commandstats")
            out["redis commands"] = sum(
                v["calls"] for k, v in stats.items() if "info" not in k and isinstance(v, dict)
            )
        if self.pg_statements:
            import asyncpg

            conn = await asyncpg.connect(_db_url(self.env.postgres_url, self.pg_db or ""))
            try:
                out["pg_stat_statements calls"] = float(
                    await conn.fetchval(
                        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
                        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 "
                        "AND s.query NOT ILIKE '%pg_stat_statements%'",
                        self.pg_db,
                    )
                )
            finally:
                await conn.close()
        return out

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _db_url(url: str, database: str) -> str:
    return urlsplit(url)._replace(path="/" + database).geturl()


async def round_trips(
    name: str, env: Env, where: Any, *, calls: int, payload_bytes: int
) -> dict[str, Any]:
    """Round trips (proxy) and server-side counts per put and per get, sequential."""
    if where is None or (isinstance(where, str) and not where.startswith(("redis", "postgres"))):
        return {}
    payloads = [chat_text(payload_bytes, seed) for seed in range(31)]
    counter = ServerCounter(env, where)
    await counter.setup()
    out: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(counter.aclose)
        saver, proxies = await stack.enter_async_context(_proxied(name, where))
        w = _Writer(saver, "round-trips", payloads)
        for _ in range(3):  # warm-up: connections, prepared statements, scripts
            await w.put()
            await w.get()
        for op in ("put", "get"):
            call = w.put if op == "put" else w.get
            before_flights = sum(p.flights for p in proxies)
            before_statements = sum(p.statements for p in proxies)
            before = await counter.read()
            for _ in range(calls):
                await call()
            after = await counter.read()
            flights = sum(p.flights for p in proxies) - before_flights
            out[op] = {"round_trips": flights / calls}
            if any(p.postgres for p in proxies):
                statements = sum(p.statements for p in proxies) - before_statements
                out[op]["postgres statements (wire)"] = statements / calls
            for key, value in after.items():
                out[op][key] = (value - before.get(key, 0)) / calls
    out["calls"] = calls
    return out
