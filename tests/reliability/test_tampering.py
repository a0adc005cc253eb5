"""Tampering with raw storage on every backend: every mutated read fails closed.

Records of two tenants, two threads each, are written twice (v1 then v2). Then each
mutation is applied to one record's stored bytes directly in the backend (sqlite3,
asyncpg UPDATE, Redis HSET on the record hash, a Blob upload of modified bytes): bit flips
in the header and the body, truncation, bodies swapped between rows, threads and tenants,
another record's older body replayed, plaintext injected, the key id changed. After each
one, every record is read back: the mutated one must raise `IntegrityError` or
`KeyUnavailableError`, every other one must return exactly its own data.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.local import LocalKey
from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import IntegrityError, KeyUnavailableError
from checkpointers.record import RecordId
from tests.reliability._raw import BACKENDS, open_backend

TENANTS = ("acme", "globex")
THREADS = ("t1", "t2")
KEYS = ("k0", "k1", "k2")
OLD_KEY = LocalKey(b"\x01" * 32)
CURRENT_KEY = LocalKey(b"\x02" * 32)


def _ring() -> KeyRing:
    return KeyRing([OLD_KEY, CURRENT_KEY])


def _data(rid: RecordId, version: int) -> bytes:
    return f"{rid.tenant}/{rid.thread}/{rid.key}/v{version}".encode() * 3


def _header_length(body: bytes) -> int:
    key_id_len = body[2]
    (wrapped_len,) = struct.unpack_from(">H", body, 3 + key_id_len)
    return 3 + key_id_len + 2 + wrapped_len + 12


def _flip(body: bytes, position: int, bit: int = 0) -> bytes:
    out = bytearray(body)
    out[position] ^= 1 << bit
    return bytes(out)


def _with_key_id(body: bytes, key_id: str) -> bytes:
    old_len = body[2]
    new = key_id.encode()
    return body[:2] + bytes([len(new)]) + new + body[3 + old_len :]


def _mutations(target: RecordId, bodies: dict[RecordId, bytes],
               old: dict[RecordId, bytes]) -> list[tuple[str, bytes]]:  # fmt: skip
    """(name, replacement body) for one target record."""
    body = bodies[target]
    header = _header_length(body)
    sibling = RecordId(
        target.tenant, target.thread, "", "doc", "k1" if target.key != "k1" else "k2"
    )
    other_thread = RecordId(target.tenant, "t2" if target.thread == "t1" else "t1", "", "doc",
                            target.key)  # fmt: skip
    other_tenant = RecordId("globex" if target.tenant == "acme" else "acme", target.thread, "",
                            "doc", target.key)  # fmt: skip
    out = [
        ("flip version byte", _flip(body, 0)),
        ("flip flags", _flip(body, 1, 1)),
        ("flip zstd flag", _flip(body, 1, 0)),
        ("flip key id length", _flip(body, 2, 3)),
        ("flip key id byte", _flip(body, 4, 1)),
        ("flip wrapped key length", _flip(body, 3 + body[2], 0)),
        ("flip wrapped key byte", _flip(body, 3 + body[2] + 2 + 5)),
        ("flip nonce byte", _flip(body, header - 3)),
        ("flip first ciphertext byte", _flip(body, header)),
        ("flip middle ciphertext byte", _flip(body, (header + len(body)) // 2, 6)),
        ("flip last tag byte", _flip(body, len(body) - 1, 7)),
        ("truncate to nothing", b""),
        ("truncate to the header", body[:header]),
        ("drop the last byte", body[:-1]),
        ("append a byte", body + b"\x00"),
        ("swap with a row of the same thread", bodies[sibling]),
        ("swap with a row of another thread", bodies[other_thread]),
        ("swap with a row of another tenant", bodies[other_tenant]),
        ("replay another row's older version", old[sibling]),
        ("replay another tenant's older version", old[other_tenant]),
        ("plaintext injected", _data(target, 2)),
        ("plaintext JSON injected", b'{"state": "plain", "v": 1}'),
        ("plaintext posing as version 1", b"\x01\x00" + _data(target, 2)),
        ("key id of another key in the ring", _with_key_id(body, OLD_KEY.key_id)),
        ("key id unknown to the ring", _with_key_id(body, "local:0000000000000000")),
        ("key id emptied", _with_key_id(body, "")),
    ]
    return out


async def _check_all(stores: dict[str, EncryptedStore], rids: list[RecordId],
                     mutated: RecordId | None, name: str) -> None:  # fmt: skip
    if mutated is not None:  # the mutated record and every record it could be mixed with
        rids = [r for r in rids if r == mutated or r.key == mutated.key or
                (r.tenant, r.thread) == (mutated.tenant, mutated.thread)]  # fmt: skip
    for rid in rids:
        store = stores[rid.tenant]
        if rid == mutated:
            with pytest.raises((IntegrityError, KeyUnavailableError)) as info:
                await store.get(rid)
            assert rid.key in str(info.value) or "key" in str(info.value), name
            assert _data(rid, 2).decode() not in str(info.value)
        else:
            entry = await store.get(rid)
            assert entry is not None and entry.data == _data(rid, 2), (name, rid)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_mutation_of_raw_storage_fails_closed(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Each of 26 mutations of a record's stored bytes makes its read raise IntegrityError
    or KeyUnavailableError, while every other record still reads back exactly its own data."""
    async with open_backend(backend, request, tmp_path) as (store, raw):
        stores = {t: EncryptedStore(store, _ring(), tenant=t) for t in TENANTS}
        rids = [RecordId(t, th, "", "doc", k) for t in TENANTS for th in THREADS for k in KEYS]
        for version in (1, 2):
            for rid in rids:
                await stores[rid.tenant].put(rid, _data(rid, version))
            if version == 1:
                old = {rid: await raw.read(rid) for rid in rids}
        bodies = {rid: await raw.read(rid) for rid in rids}
        assert all(bodies[rid] != old[rid] for rid in rids)
        count = 0
        for target in (rids[0], rids[-1]):
            for name, replacement in _mutations(target, bodies, old):
                await raw.write(target, replacement)
                await _check_all(stores, rids, target, f"{backend}: {name}")
                await raw.write(target, bodies[target])
                count += 1
        await _check_all(stores, rids, None, "restored")
        print(f"{backend}: {count} mutations, all detected")


async def _one_backend_records(stores: dict[str, EncryptedStore]) -> list[RecordId]:
    rids = [RecordId("acme", th, "", "doc", k) for th in THREADS for k in KEYS]
    for rid in rids:
        await stores["acme"].put(rid, _data(rid, 1))
    return rids


@pytest.mark.parametrize("backend", BACKENDS)
async def test_replaying_a_records_own_older_version_returns_only_its_own_data(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A record rolled back to its own older body (a replay on the same identity) decrypts
    to that record's older data: not detectable per record (see SECURITY.md), and never
    data of another record."""
    async with open_backend(backend, request, tmp_path) as (store, raw):
        stores = {"acme": EncryptedStore(store, _ring(), tenant="acme")}
        rids = await _one_backend_records(stores)
        target = rids[0]
        old = await raw.read(target)
        await stores["acme"].put(target, _data(target, 2))
        await raw.write(target, old)
        entry = await stores["acme"].get(target)
        assert entry is not None and entry.data == _data(target, 1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_whole_thread_rollback_is_undetected_but_mixing_threads_is(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Restoring every row of a thread to an older valid state reads back as that older
    state (no per-thread version chain: documented in SECURITY.md), but splicing rows of
    another thread or tenant into it is detected."""
    async with open_backend(backend, request, tmp_path) as (store, raw):
        stores = {t: EncryptedStore(store, _ring(), tenant=t) for t in TENANTS}
        rids = [RecordId(t, th, "", "doc", k) for t in TENANTS for th in THREADS for k in KEYS]
        for rid in rids:
            await stores[rid.tenant].put(rid, _data(rid, 1))
        snapshot = {rid: await raw.read(rid) for rid in rids}
        for rid in rids:
            await stores[rid.tenant].put(rid, _data(rid, 2))
        thread = [rid for rid in rids if rid.tenant == "acme" and rid.thread == "t1"]
        for rid in thread:
            await raw.write(rid, snapshot[rid])
        for rid in thread:
            entry = await stores["acme"].get(rid)
            assert entry is not None and entry.data == _data(rid, 1)
        spliced = thread[0]
        donor = RecordId("acme", "t2", "", "doc", spliced.key)
        await raw.write(spliced, snapshot[donor])
        with pytest.raises(IntegrityError):
            await stores["acme"].get(spliced)
        foreign = RecordId("globex", "t1", "", "doc", spliced.key)
        await raw.write(spliced, snapshot[foreign])
        with pytest.raises(IntegrityError):
            await stores["acme"].get(spliced)
        found = await stores["acme"].store.find(stores["acme"].query(thread="t2"))
        assert {r.id for r in found} == {r for r in rids if r.tenant == "acme" and r.thread == "t2"}
