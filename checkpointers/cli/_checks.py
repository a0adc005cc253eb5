"""`checkpointers verify` and `health`: the checks that exit 1 when they fail (private).

Plain command functions; `checkpointers.cli` registers them on the app.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from checkpointers.cli._options import Options, key_versions, options
from checkpointers.cli._output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    emit,
    err,
    execute,
)
from checkpointers.cli._records import record_json
from checkpointers.cli._stores import open_tiers, resolve_tenant
from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.provider import KeyEncryptionKey
from checkpointers.encrypted import DEFAULT_TENANT
from checkpointers.errors import CheckpointersError, ConfigurationError, IntegrityError
from checkpointers.maintenance import verify_records
from checkpointers.record import INDEX_KEY_KIND, Query, RecordId

if TYPE_CHECKING:
    from checkpointers.stores.base import Store
    from checkpointers.tiered import TieredStore

__all__ = ["health_command", "verify_command"]


def verify_command(
    ctx: typer.Context,
    sample: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Check every Nth record in scan order: 1 (default) checks all, 10 checks "
            "records 1, 11, 21, ... (about a tenth).",
        ),
    ] = 1,
    tiers: Annotated[
        bool,
        typer.Option(
            "--tiers",
            help="Instead: compare threads across the tiers (counts, digests, latest "
            "ids); exit 1 on differences.",
        ),
    ] = False,
    thread: Annotated[
        str | None, typer.Option(help="With --tiers: only this thread or run.")
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="With --tiers: evict stale hot copies and archive again a thread whose "
            "archive copy differs; exit 1 only if differences remain.",
        ),
    ] = False,
) -> None:
    """Decrypt-check every record (or a sample); exit 1 naming the records that fail.

    With --tiers, compare each thread (all threads of --tenant, or --thread) across the
    tiers instead, the durable tier being the truth (the archive for archived threads).
    """
    opts = options(ctx)
    if (thread is not None or repair) and not tiers:
        err("error: --thread and --repair go with --tiers")
        raise typer.Exit(EXIT_USAGE)
    if tiers:
        execute(lambda: _compare_tiers(opts, thread, repair=repair))
        return

    async def run() -> int:
        ring = KeyRing(key_versions(opts))
        checked = 0
        failures: list[dict[str, Any]] = []
        async with open_tiers(opts) as stores:
            tiers = stores.tiers
            with Progress("verifying", quiet=opts.as_json) as progress:
                for tier in tiers:
                    count, failed = await verify_records(
                        tier.store, ring, sample_every=sample, progress=progress.advance
                    )
                    checked += count
                    failures += [
                        {
                            "store": tier.label,
                            "record": record_json(f.record),
                            "error": f.error,
                            "message": f.message,
                        }
                        for f in failed
                    ]
        data = {"checked": checked, "failures": failures, "ok": not failures}
        emit(
            opts,
            data,
            lambda: (
                [f"FAIL {f['store']} {f['error']}: {f['message']}" for f in failures]
                + [f"checked {checked} record(s): {len(failures)} failure(s)"]
            ),
        )
        return EXIT_FAILED if failures else EXIT_OK

    execute(run)


async def _thread_list(tiered: TieredStore, tenant: str | None) -> list[tuple[str, str]]:
    """Every (tenant, thread) any tier lists, in order."""
    found: set[tuple[str, str]] = set()
    for tier in (tiered.hot, tiered.durable, tiered.archive):
        after: str | None = None
        while tier is not None:
            page = await tier.threads(tenant, after=after, limit=500)
            found.update(page)
            if len(page) < 500:
                break
            after = page[-1][1]
    return sorted(found, key=lambda pair: (pair[1], pair[0]))


async def _compare_tiers(opts: Options, thread: str | None, *, repair: bool) -> int:
    async with open_tiers(opts) as stores:
        if stores.tiered is None:
            raise ConfigurationError("verify --tiers needs tiers: give --url more than once")
        tiered = stores.tiered
        tenant = resolve_tenant(opts, stores.tiers)
        if thread is not None:
            pairs = [(tenant or DEFAULT_TENANT, thread)]
        else:
            pairs = await _thread_list(tiered, tenant)
        reports = [await tiered.compare_thread(t, th, repair=repair) for t, th in pairs]
        remaining = [r for r in reports if not r.consistent]
        if repair and remaining:
            remaining = [
                again
                for r in remaining
                if not (again := await tiered.compare_thread(r.tenant, r.thread)).consistent
            ]
    found: list[dict[str, Any]] = [
        {
            "tenant": r.tenant,
            "thread": r.thread,
            "truth": r.truth,
            "tier": d.tier,
            "problem": d.problem,
            "record": {"namespace": d.record.namespace, "kind": d.record.kind,
                       "key": d.record.key},
        }
        for r in reports
        for d in r.differences
    ] + [
        {"tenant": r.tenant, "thread": r.thread, "truth": r.truth, "tier": tier,
         "problem": "unreachable", "record": None}
        for r in reports
        for tier in r.unreachable
    ]  # fmt: skip
    ok = not remaining
    data = {
        "threads": len(reports),
        "differences": found,
        "repaired": repair and bool(found),
        "ok": ok,
        "tiers": {
            f"{r.tenant}/{r.thread}": {
                name: {"records": d.records, "digest": d.digest, "latest_sort": d.latest_sort}
                for name, d in r.tiers.items()
            }
            for r in reports
        },
    }

    def lines() -> list[str]:
        out = []
        for f in found:
            rec = f["record"]
            where = "" if rec is None else f" {rec['kind']}/{rec['key']}"
            ns = "" if rec is None or not rec["namespace"] else f" ns={rec['namespace']}"
            out.append(
                f"DIFF {f['tenant']}/{f['thread']} {f['tier']} {f['problem']}{where}{ns}"
                f" (truth: {f['truth']})"
            )
        state = "repaired" if repair and found and ok else "ok" if ok else "differences"
        out.append(f"compared {len(reports)} thread(s): {len(found)} difference(s), {state}")
        return out

    emit(opts, data, lines)
    return EXIT_OK if ok else EXIT_FAILED


async def _check_keys(versions: list[KeyEncryptionKey]) -> None:
    """Wrap and unwrap a random data key with every key version, then a full envelope."""
    for version in versions:
        data_key = secrets.token_bytes(32)
        unwrapped = await version.unwrap_key(await version.wrap_key(data_key))
        if not hmac.compare_digest(unwrapped, data_key):
            raise IntegrityError(f"key {version.key_id!r} does not round-trip a data key")
    aad = RecordId("health", "health", "", "health", "health").aad()
    sealed = await KeyRing(versions).encrypt(b"checkpointers health check", aad)
    # A fresh ring has an empty cache, so this decrypt really unwraps the data key.
    if await KeyRing(versions).decrypt(sealed, aad) != b"checkpointers health check":
        raise IntegrityError("the key ring does not round-trip an envelope")


async def _check_data(store: Store, versions: list[KeyEncryptionKey]) -> None:
    """Decrypt one record of every tenant (its blind-index key) with the keys: a key
    ring that cannot read the stored data is unhealthy, not only an unreachable one. A
    store without a schema yet holds nothing to read."""
    if not await store.is_set_up():
        return
    ring = KeyRing(versions)
    for record in await store.find(Query(tenant=None, kind=INDEX_KEY_KIND)):
        await ring.decrypt(record.body, record.id.aad(), record=record.id)


def health_command(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per check.")] = 10.0,
) -> None:
    """Ping every store, check the key ring wraps and unwraps and reads one record of
    every tenant in every store; exit 0 or 1."""
    opts = options(ctx)

    async def run() -> int:
        checks: list[dict[str, Any]] = []

        async def check(
            kind: str, name: str, probe: Callable[[], Coroutine[Any, Any, None]]
        ) -> None:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(probe(), timeout)
            except (CheckpointersError, asyncio.TimeoutError) as exc:
                error = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
                checks.append(
                    {
                        "check": kind,
                        "name": name,
                        "ok": False,
                        "error": f"{type(exc).__name__}: {error}",
                    }
                )
                return
            ms = round((time.perf_counter() - start) * 1000, 1)
            checks.append({"check": kind, "name": name, "ok": True, "ms": ms})

        async with open_tiers(opts, migrate=False) as stores:
            tiers = stores.tiers
            for tier in tiers:
                await check("store", tier.label, tier.store.ping)
        try:
            versions = key_versions(opts)
        except ConfigurationError as exc:
            checks.append(
                {
                    "check": "keys",
                    "name": "key ring",
                    "ok": False,
                    "error": f"ConfigurationError: {exc}",
                }
            )
        else:
            ids = ", ".join(v.key_id for v in versions)
            await check("keys", ids, lambda: _check_keys(versions))
            if all(c["ok"] for c in checks):
                async with open_tiers(opts, migrate=False) as stores:
                    for tier in stores.tiers:
                        probe = partial(_check_data, tier.store, versions)
                        await check("data", tier.label, probe)
        healthy = all(c["ok"] for c in checks)

        def lines() -> list[str]:
            out = [
                f"ok   {c['check']} {c['name']} ({c['ms']} ms)"
                if c["ok"]
                else f"FAIL {c['check']} {c['name']}: {c['error']}"
                for c in checks
            ]
            return [*out, "healthy" if healthy else "unhealthy"]

        emit(opts, {"healthy": healthy, "checks": checks}, lines)
        return EXIT_OK if healthy else EXIT_FAILED

    execute(run)
