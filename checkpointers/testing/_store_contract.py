"""The shared store suite: the behaviour every `Store` must have.

Subclass `StoreContract` and provide a `store` fixture yielding a fresh, empty, set-up
store. Expiry is tested with explicit `expires_at` values, never with sleeps.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

import pytest

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import ConflictError, IntegrityError, KeyUnavailableError
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores.base import Store
from checkpointers.testing._keys import deterministic_key_ring

__all__ = ["StoreContract"]


def _rid(thread: str = "t1", key: str = "k1", *, tenant: str = "acme", kind: str = "doc",
         namespace: str = "") -> RecordId:  # fmt: skip
    return RecordId(tenant, thread, namespace, kind, key)


def _record(rid: RecordId, body: bytes = b"\x00body\xff", **fields: object) -> Record:
    return Record(id=rid, body=body, **fields)  # type: ignore[arg-type]


def _keys(records: list[Record]) -> list[str]:
    return [r.id.key for r in records]


class StoreContract:
    """Behaviour shared by every store. Provide a `store` fixture in the subclass."""

    # -- round trips ------------------------------------------------------------------

    async def test_get_absent_returns_none(self, store: Store) -> None:
        """A record that was never written reads as None."""
        assert await store.get(_rid()) is None

    async def test_put_get_round_trip_keeps_every_field(self, store: Store) -> None:
        """Body bytes and every routing field come back exactly as written."""
        rid = _rid()
        body = bytes(range(256)) * 3
        written = _record(
            rid, body, sort="0003", group="g1", status="created",
            tokens=frozenset({"ab" * 16, "cd" * 16}), expires_at=time.time() + 3600,
            lease_until=1234.5,
        )  # fmt: skip
        assert await store.put(written) == 1
        got = await store.get(rid)
        assert got is not None
        assert got.id == rid
        assert got.body == body
        assert (got.sort, got.group, got.status) == ("0003", "g1", "created")
        assert got.tokens == written.tokens
        assert got.expires_at == pytest.approx(written.expires_at)
        assert got.lease_until == pytest.approx(1234.5)
        assert got.version == 1
        assert got.updated_at > 0

    async def test_put_overwrites_and_bumps_version(self, store: Store) -> None:
        """An upsert replaces the body and increments the row version."""
        rid = _rid()
        assert await store.put(_record(rid, b"one")) == 1
        assert await store.put(_record(rid, b"two")) == 2
        got = await store.get(rid)
        assert got is not None and (got.body, got.version) == (b"two", 2)

    async def test_get_many_keeps_order_and_answers_none_for_missing(self, store: Store) -> None:
        """get_many answers each identity in order, across threads and tenants, None if absent."""
        ids = [_rid("t1", "a"), _rid("t2", "b"), _rid("t1", "c", namespace="sub"),
               _rid("t1", "d", tenant="globex"), _rid("t1", "e", kind="other")]  # fmt: skip
        await store.put_many([_record(rid, rid.key.encode(), sort=rid.key) for rid in ids])
        asked = [ids[3], _rid("t1", "absent"), ids[0], ids[4], _rid("t9", "a"), ids[2], ids[1]]
        got = await store.get_many(asked)
        assert len(got) == len(asked)
        for rid, record in zip(asked, got, strict=True):
            if rid.key in ("absent",) or rid.thread == "t9":
                assert record is None
            else:
                assert record is not None
                assert (record.id, record.body, record.sort, record.version) == (
                    rid, rid.key.encode(), rid.key, 1)  # fmt: skip
        assert await store.get_many([]) == []

    async def test_get_many_answers_duplicates_and_hides_expired(self, store: Store) -> None:
        """A repeated identity gets an answer per occurrence; an expired record reads None."""
        now = time.time()
        await store.put_many([
            _record(_rid(key="live"), b"live", expires_at=now + 3600),
            _record(_rid(key="old"), b"old", expires_at=now - 1),
            _record(_rid(key="forever"), b"forever"),
        ])  # fmt: skip
        asked = [_rid(key="live"), _rid(key="old"), _rid(key="live"), _rid(key="forever"),
                 _rid(key="old")]  # fmt: skip
        got = await store.get_many(asked)
        assert [None if r is None else r.body for r in got] == [
            b"live", None, b"live", b"forever", None]  # fmt: skip
        single = [await store.get(rid) for rid in asked]
        assert [None if r is None else (r.id, r.version) for r in got] == [
            None if r is None else (r.id, r.version) for r in single]  # fmt: skip

    # -- compare-and-set ----------------------------------------------------------------

    async def test_insert_if_absent_conflicts_when_present(self, store: Store) -> None:
        """expected_version=0 creates once, then raises ConflictError."""
        rid = _rid()
        assert await store.put(_record(rid, b"first"), expected_version=0) == 1
        with pytest.raises(ConflictError):
            await store.put(_record(rid, b"second"), expected_version=0)
        got = await store.get(rid)
        assert got is not None and got.body == b"first"

    async def test_stale_version_conflicts(self, store: Store) -> None:
        """A write with an outdated version raises ConflictError and changes nothing."""
        rid = _rid()
        await store.put(_record(rid, b"v1"))
        assert await store.put(_record(rid, b"v2"), expected_version=1) == 2
        with pytest.raises(ConflictError):
            await store.put(_record(rid, b"stale"), expected_version=1)
        with pytest.raises(ConflictError):
            await store.put(_record(_rid(key="absent"), b"x"), expected_version=3)
        got = await store.get(rid)
        assert got is not None and (got.body, got.version) == (b"v2", 2)

    async def test_concurrent_compare_and_set_has_one_winner(self, store: Store) -> None:
        """Of many writers racing on one version, exactly one wins."""
        rid = _rid()
        await store.put(_record(rid, b"base"))

        async def attempt(n: int) -> bool:
            try:
                await store.put(_record(rid, f"w{n}".encode()), expected_version=1)
            except ConflictError:
                return False
            return True

        results = await asyncio.gather(*(attempt(n) for n in range(20)))
        assert sum(results) == 1
        got = await store.get(rid)
        assert got is not None and got.version == 2

    # -- batches ------------------------------------------------------------------------

    async def test_put_many_writes_all(self, store: Store) -> None:
        """put_many stores every record of the batch."""
        records = [_record(_rid(key=f"k{i}"), f"b{i}".encode(), sort=f"{i:04}") for i in range(5)]
        await store.put_many(records)
        found = await store.find(Query(tenant="acme", kind="doc", thread="t1"))
        assert _keys(found) == [f"k{i}" for i in range(5)]
        assert [r.body for r in found] == [f"b{i}".encode() for i in range(5)]

    async def test_put_many_if_absent_keeps_existing(self, store: Store) -> None:
        """if_absent=True skips records that exist and inserts the others."""
        await store.put(_record(_rid(key="a"), b"old"))
        await store.put_many(
            [_record(_rid(key="a"), b"new"), _record(_rid(key="b"), b"fresh")], if_absent=True
        )
        a, b = await store.get(_rid(key="a")), await store.get(_rid(key="b"))
        assert a is not None and (a.body, a.version) == (b"old", 1)
        assert b is not None and b.body == b"fresh"

    async def test_put_many_upsert_replaces(self, store: Store) -> None:
        """Without if_absent, put_many replaces existing records."""
        await store.put(_record(_rid(key="a"), b"old"))
        await store.put_many([_record(_rid(key="a"), b"new")])
        a = await store.get(_rid(key="a"))
        assert a is not None and (a.body, a.version) == (b"new", 2)

    async def test_put_many_empty_is_noop(self, store: Store) -> None:
        """An empty batch does nothing and does not fail."""
        assert await store.put_many([]) == []
        assert await store.find(Query(tenant=None)) == []

    async def test_put_many_returns_new_versions_in_input_order(self, store: Store) -> None:
        """put_many answers each record's new row version in input order: 1 for a fresh
        insert, n + 1 over a stored version n, across threads and tenants."""
        await store.put(_record(_rid(key="a"), b"a1"))
        await store.put(_record(_rid(key="a"), b"a2"))
        await store.put(_record(_rid("t2", "c"), b"c1"))
        batch = [_record(_rid("t2", "new")), _record(_rid(key="a"), b"a3"),
                 _record(_rid("t1", "x", tenant="globex")),
                 _record(_rid("t2", "c"), b"c2")]  # fmt: skip
        assert await store.put_many(batch) == [1, 3, 1, 2]
        got = await store.get_many([r.id for r in batch])
        assert [None if r is None else (r.body, r.version) for r in got] == [
            (batch[0].body, 1), (b"a3", 3), (batch[2].body, 1), (b"c2", 2)]  # fmt: skip

    async def test_concurrent_put_many_batches_each_get_their_own_versions(
        self, store: Store
    ) -> None:
        """Concurrent put_many calls (which a store may merge into one call) each answer
        their own records' versions: repeats of an upsert get distinct versions ending
        at the count, one insert-if-absent of an identity wins, the rest answer None."""
        shared, first = _rid(key="shared"), _rid(key="first")
        upserts = [
            [_record(shared, f"u{i}".encode()), _record(_rid(key=f"own{i}"), b"x")]
            for i in range(12)
        ]
        inserts = [[_record(first, f"i{i}".encode())] for i in range(12)]
        results = await asyncio.gather(
            *(store.put_many(batch) for batch in upserts),
            *(store.put_many(batch, if_absent=True) for batch in inserts),
        )
        up, ins = results[:12], results[12:]
        assert all(len(r) == 2 and r[1] == 1 for r in up)
        assert sorted(int(r[0] or 0) for r in up) == list(range(1, 13))
        stored = await store.get(shared)
        assert stored is not None and stored.version == 12
        last = next(i for i, r in enumerate(up) if r[0] == 12)
        assert stored.body == f"u{last}".encode()
        winners = [i for i, r in enumerate(ins) if r == [1]]
        assert len(winners) == 1 and all(r == [None] for r in ins if r != [1])
        kept = await store.get(first)
        assert kept is not None and kept.body == f"i{winners[0]}".encode()

    async def test_put_many_if_absent_answers_none_for_skipped(self, store: Store) -> None:
        """With if_absent, a record that exists answers None and is untouched; an absent
        or expired one is inserted and answers its version."""
        now = time.time()
        await store.put(_record(_rid(key="live"), b"old"))
        await store.put(_record(_rid(key="gone"), b"old", expires_at=now - 1))
        batch = [_record(_rid(key="fresh"), b"new"), _record(_rid(key="live"), b"new"),
                 _record(_rid(key="gone"), b"new")]  # fmt: skip
        versions = await store.put_many(batch, if_absent=True)
        # The version over an expired record depends on whether the backend still held it.
        assert versions[:2] == [1, None] and versions[2] is not None
        got = await store.get_many([r.id for r in batch])
        assert [None if r is None else (r.body, r.version) for r in got] == [
            (b"new", 1), (b"old", 1), (b"new", versions[2])]  # fmt: skip
        assert await store.put_many(batch, if_absent=True) == [None, None, None]

    async def test_put_many_repeated_identity_is_written_in_turn(self, store: Store) -> None:
        """An identity repeated in one batch is written in turn: an upsert keeps the last
        record and counts every write; with if_absent the repeats find it present."""
        await store.put(_record(_rid(key="a"), b"a1"))
        batch = [_record(_rid(key="a"), b"a2"), _record(_rid(key="b"), b"b1"),
                 _record(_rid(key="a"), b"a3"), _record(_rid(key="b"), b"b2"),
                 _record(_rid(key="a"), b"a4")]  # fmt: skip
        assert await store.put_many(batch) == [2, 1, 3, 2, 4]
        a, b = await store.get(_rid(key="a")), await store.get(_rid(key="b"))
        assert a is not None and (a.body, a.version) == (b"a4", 4)
        assert b is not None and (b.body, b.version) == (b"b2", 2)
        twice = [_record(_rid(key="c"), b"c1"), _record(_rid(key="a"), b"x"),
                 _record(_rid(key="c"), b"c2")]  # fmt: skip
        assert await store.put_many(twice, if_absent=True) == [1, None, None]
        c = await store.get(_rid(key="c"))
        assert c is not None and (c.body, c.version) == (b"c1", 1)

    async def test_replicate_keeps_versions_and_timestamps(self, store: Store) -> None:
        """replicate() writes records exactly as given, replacing existing ones."""
        rid = _rid()
        await store.put(_record(rid, b"local"))
        copy = _record(rid, b"copied", sort="s", status="done", version=7, updated_at=1234.0,
                       tokens=frozenset({"ab" * 16}))  # fmt: skip
        await store.replicate([copy, _record(_rid(key="k2"), version=3, updated_at=5.0)])
        got = await store.get(rid)
        assert got is not None
        assert (got.body, got.version, got.status, got.sort) == (b"copied", 7, "done", "s")
        assert got.updated_at == pytest.approx(1234.0)
        assert got.tokens == copy.tokens
        assert await store.put(_record(rid, b"next"), expected_version=7) == 8

    async def test_replicate_never_goes_back_in_version(self, store: Store) -> None:
        """replicate() keeps a stored copy with a higher row version, even under races."""
        rid = _rid()
        await store.replicate([_record(rid, b"v5", version=5, updated_at=5.0)])
        await store.replicate([_record(rid, b"v3", version=3, updated_at=3.0)])
        got = await store.get(rid)
        assert got is not None and (got.body, got.version) == (b"v5", 5)
        await store.replicate([_record(rid, b"v5-again", version=5, updated_at=6.0)])
        got = await store.get(rid)
        assert got is not None and (got.body, got.version) == (b"v5-again", 5)
        await store.replicate([_record(rid, b"v7", version=7), _record(rid, b"v6", version=6)])
        got = await store.get(rid)
        assert got is not None and (got.body, got.version) == (b"v7", 7)
        other = _rid(key="raced")
        versions = [(v * 7) % 20 + 1 for v in range(20)]  # 1..20, shuffled
        await asyncio.gather(
            *(store.replicate([_record(other, f"v{v}".encode(), version=v, updated_at=float(v))])
              for v in versions)
        )  # fmt: skip
        got = await store.get(other)
        assert got is not None and (got.body, got.version) == (b"v20", 20)

    # -- queries ------------------------------------------------------------------------

    async def _seed(self, store: Store) -> None:
        records = [
            _record(_rid("t1", f"c{i}"), sort=f"{i:04}", group=f"g{i % 2}",
                    status="created" if i % 3 else "done",
                    tokens=frozenset({"aa" * 16} | ({"bb" * 16} if i % 2 else set())))
            for i in range(6)
        ] + [
            _record(_rid("t2", "c9"), sort="0009"),
            _record(_rid("t1", "n0", namespace="sub"), sort="0010"),
            _record(_rid("t1", "x0", kind="other"), sort="0011"),
        ]  # fmt: skip
        await store.put_many(records)

    async def test_find_orders_and_limits(self, store: Store) -> None:
        """Results are ordered by sort, ascending or descending, then cut at limit."""
        await self._seed(store)
        q = Query(tenant="acme", kind="doc", thread="t1", namespace="")
        assert _keys(await store.find(q)) == ["c0", "c1", "c2", "c3", "c4", "c5"]
        desc = replace(q, descending=True, limit=2)
        assert _keys(await store.find(desc)) == ["c5", "c4"]
        assert _keys(await store.find(replace(q, limit=0))) == []

    async def test_find_pages_with_before_and_after(self, store: Store) -> None:
        """before/after compare strictly with sort."""
        await self._seed(store)
        q = Query(tenant="acme", kind="doc", thread="t1", namespace="")
        assert _keys(await store.find(replace(q, before="0002"))) == ["c0", "c1"]
        assert _keys(await store.find(replace(q, after="0003"))) == ["c4", "c5"]
        page = replace(q, descending=True, before="0004", limit=2)
        assert _keys(await store.find(page)) == ["c3", "c2"]

    async def test_find_filters_on_routing_fields(self, store: Store) -> None:
        """thread, namespace, group, statuses and kind narrow the selection."""
        await self._seed(store)
        base = Query(tenant="acme", kind="doc")
        assert _keys(await store.find(replace(base, thread="t2"))) == ["c9"]
        assert _keys(await store.find(replace(base, namespace="sub"))) == ["n0"]
        assert _keys(await store.find(replace(base, group="g1"))) == ["c1", "c3", "c5"]
        done = await store.find(replace(base, statuses=("done",)))
        assert _keys(done) == ["c0", "c3"]
        assert _keys(await store.find(Query(tenant="acme", kind="other"))) == ["x0"]
        every = await store.find(Query(tenant="acme"))
        assert len(every) == 9

    async def test_find_requires_every_token(self, store: Store) -> None:
        """A record matches only if it carries all the queried tokens."""
        await self._seed(store)
        q = Query(tenant="acme", kind="doc", thread="t1")
        assert len(await store.find(replace(q, tokens=("aa" * 16,)))) == 6
        both = await store.find(replace(q, tokens=("aa" * 16, "bb" * 16)))
        assert _keys(both) == ["c1", "c3", "c5"]
        assert await store.find(replace(q, tokens=("cc" * 16,))) == []

    async def test_latest_is_greatest_sort(self, store: Store) -> None:
        """latest() returns the record with the greatest sort key."""
        await self._seed(store)
        latest = await store.latest(Query(tenant="acme", kind="doc", thread="t1", namespace=""))
        assert latest is not None and latest.id.key == "c5"
        assert await store.latest(Query(tenant="acme", kind="doc", thread="nope")) is None

    async def test_tenants_are_isolated(self, store: Store) -> None:
        """The same identity in two tenants is two records; queries never cross tenants."""
        await store.put(_record(_rid(tenant="acme"), b"a"))
        await store.put(_record(_rid(tenant="globex"), b"g"))
        a, g = await store.get(_rid(tenant="acme")), await store.get(_rid(tenant="globex"))
        assert a is not None and g is not None and (a.body, g.body) == (b"a", b"g")
        found = await store.find(Query(tenant="globex"))
        assert [r.body for r in found] == [b"g"]
        assert await store.delete_tenant("globex") == 1
        assert await store.get(_rid(tenant="acme")) is not None
        assert await store.get(_rid(tenant="globex")) is None

    # -- claims -------------------------------------------------------------------------

    async def test_claim_takes_oldest_and_sets_status(self, store: Store) -> None:
        """claim() returns the oldest claimable record with its new status and version."""
        await store.put_many(
            [_record(_rid("run", f"s{i}", kind="snap"), sort=f"{i:04}", status="created")
             for i in (2, 0, 1)]
        )  # fmt: skip
        claim = Claim("acme", "run", "snap", ("created",), "pending", lease_until=99.0)
        first = await store.claim(claim)
        assert first is not None
        assert (first.id.key, first.status, first.version) == ("s0", "pending", 2)
        assert first.lease_until == pytest.approx(99.0)
        stored = await store.get(first.id)
        assert stored is not None and stored.status == "pending"
        second = await store.claim(claim)
        assert second is not None and second.id.key == "s1"

    async def test_claim_returns_none_when_nothing_claimable(self, store: Store) -> None:
        """No record in a claimable status: claim() returns None."""
        await store.put(_record(_rid("run", "s0", kind="snap"), status="success"))
        assert await store.claim(Claim("acme", "run", "snap", ("created",), "pending")) is None

    async def test_concurrent_claims_take_each_record_once(self, store: Store) -> None:
        """Many claimers at once: every record is claimed exactly once."""
        await store.put_many(
            [_record(_rid("run", f"s{i:03}", kind="snap"), sort=f"{i:04}", status="created")
             for i in range(40)]
        )  # fmt: skip
        claim = Claim("acme", "run", "snap", ("created",), "pending")
        results = await asyncio.gather(*(store.claim(claim) for _ in range(60)))
        claimed = [r.id.key for r in results if r is not None]
        assert sorted(claimed) == [f"s{i:03}" for i in range(40)]

    async def test_claim_reclaims_expired_lease_only_when_asked(self, store: Store) -> None:
        """A record whose lease ended is claimable with reclaim_expired, not without."""
        now = time.time()
        await store.put_many([
            _record(_rid("run", "dead", kind="snap"), sort="0001", status="running",
                    lease_until=now - 10),
            _record(_rid("run", "alive", kind="snap"), sort="0000", status="running",
                    lease_until=now + 3600),
        ])  # fmt: skip
        plain = Claim("acme", "run", "snap", ("created",), "pending")
        assert await store.claim(plain) is None
        reclaim = replace(plain, reclaim_expired=True, lease_until=now + 60)
        got = await store.claim(reclaim)
        assert got is not None and (got.id.key, got.status) == ("dead", "pending")
        assert await store.claim(reclaim) is None

    async def test_a_set_up_store_says_so(self, store: Store) -> None:
        """`is_set_up` is True once `setup()` ran (the suite's stores are set up)."""
        assert await store.is_set_up() is True

    async def test_claim_judges_leases_at_the_callers_time(self, store: Store) -> None:
        """With `at`, a lease is judged by the caller's clock, not the store's: a lease
        that has not ended by the store's clock is reclaimable at a later `at`."""
        now = time.time()
        await store.put(_record(_rid("run", "held", kind="snap"), sort="0", status="running",
                                lease_until=now + 3600))  # fmt: skip
        claim = Claim("acme", "run", "snap", ("created",), "pending", lease_until=now + 7300,
                      reclaim_expired=True)  # fmt: skip
        assert await store.claim(replace(claim, at=now + 60)) is None
        got = await store.claim(replace(claim, at=now + 7200))
        assert got is not None and (got.id.key, got.status) == ("held", "pending")
        assert got.lease_until == now + 7300

    # -- expiry -------------------------------------------------------------------------

    async def test_expired_records_are_invisible_and_swept(self, store: Store) -> None:
        """Past expires_at: get/find/claim ignore the record and sweep deletes it."""
        now = time.time()
        await store.put_many([
            _record(_rid(key="old"), sort="1", status="created", expires_at=now - 1),
            _record(_rid(key="new"), sort="2", status="created", expires_at=now + 3600),
            _record(_rid(key="forever"), sort="3"),
        ])  # fmt: skip
        assert await store.get(_rid(key="old")) is None
        assert _keys(await store.find(Query(tenant="acme"))) == ["new", "forever"]
        assert await store.claim(Claim("acme", "t1", "doc", ("created",), "x")) is not None
        await store.sweep(now=now + 1)
        assert [r.id.key for r in await store.scan()] == ["forever", "new"]
        assert await store.sweep(now=now + 7200) == 1
        assert [r.id.key for r in await store.scan()] == ["forever"]

    async def test_expired_record_can_be_created_again(self, store: Store) -> None:
        """Insert-if-absent treats an expired record as absent."""
        rid = _rid()
        await store.put(_record(rid, b"old", expires_at=time.time() - 1))
        await store.put(_record(rid, b"new"), expected_version=0)
        await store.put_many([_record(_rid(key="k2"), b"x", expires_at=time.time() - 1)])
        await store.put_many([_record(_rid(key="k2"), b"y")], if_absent=True)
        got, got2 = await store.get(rid), await store.get(_rid(key="k2"))
        assert got is not None and got.body == b"new"
        assert got2 is not None and got2.body == b"y"

    # -- deletes ------------------------------------------------------------------------

    async def test_delete_is_idempotent(self, store: Store) -> None:
        """delete() counts the records that existed; deleting again counts zero."""
        await store.put_many([_record(_rid(key="a")), _record(_rid(key="b"))])
        assert await store.delete([_rid(key="a"), _rid(key="zzz")]) == 1
        assert await store.delete([_rid(key="a")]) == 0
        assert _keys(await store.find(Query(tenant="acme"))) == ["b"]

    async def test_delete_thread_removes_all_namespaces_and_kinds(self, store: Store) -> None:
        """delete_thread() removes every record of the thread and nothing else."""
        await self._seed(store)
        assert await store.delete_thread("acme", "t1") == 8
        assert await store.delete_thread("acme", "t1") == 0
        assert _keys(await store.find(Query(tenant="acme"))) == ["c9"]

    # -- listing for operations ---------------------------------------------------------

    async def test_threads_lists_distinct_threads_in_pages(self, store: Store) -> None:
        """threads() lists each (tenant, thread) once, in order, after a cursor."""
        await store.put_many(
            [_record(_rid(f"t{i}", f"k{j}"), sort=str(j)) for i in range(5) for j in range(2)]
            + [_record(_rid("t9", tenant="other"))]
        )
        assert await store.threads("acme", limit=3) == [("acme", "t0"), ("acme", "t1"),
                                                        ("acme", "t2")]  # fmt: skip
        assert await store.threads("acme", after="t2") == [("acme", "t3"), ("acme", "t4")]
        assert ("other", "t9") in await store.threads(None)

    async def test_scan_walks_everything_in_identity_order(self, store: Store) -> None:
        """scan() pages through every record by identity."""
        await self._seed(store)
        seen: list[RecordId] = []
        after = None
        while True:
            page = await store.scan(after, limit=4)
            if not page:
                break
            seen += [r.id for r in page]
            after = page[-1].id
        assert seen == sorted(seen)
        assert len(seen) == 9

    async def test_ping_answers(self, store: Store) -> None:
        """ping() returns when the backend is up."""
        await store.ping()

    # -- fail closed through the encrypted layer ---------------------------------------

    async def test_encrypted_round_trip_and_tamper_detection(self, store: Store) -> None:
        """A flipped bit, a moved body or plaintext in the store raises, never returns data."""
        enc = EncryptedStore(store, deterministic_key_ring(), tenant="acme")
        rid, other = enc.record_id("t1", "", "doc", "a"), enc.record_id("t2", "", "doc", "a")
        secret = f"canary-{uuid.uuid4()}".encode()
        await enc.put(rid, secret)
        await enc.put(other, b"other")
        entry = await enc.get(rid)
        assert entry is not None and entry.data == secret
        raw = await store.get(rid)
        assert raw is not None and secret not in raw.body
        flipped = bytearray(raw.body)
        flipped[-1] ^= 0x01
        await store.put(replace(raw, body=bytes(flipped)))
        with pytest.raises(IntegrityError):
            await enc.get(rid)
        moved = await store.get(other)
        assert moved is not None
        await store.put(replace(moved, id=rid))
        with pytest.raises(IntegrityError):
            await enc.get(rid)
        await store.put(replace(raw, body=secret))
        with pytest.raises(IntegrityError):
            await enc.get(rid)

    async def test_encrypted_get_many_decrypts_and_fails_closed(self, store: Store) -> None:
        """EncryptedStore.get_many decrypts in order and raises on a tampered record."""
        enc = EncryptedStore(store, deterministic_key_ring(), tenant="acme")
        ids = [enc.record_id("t1", "", "doc", f"k{i}") for i in range(3)]
        for i, rid in enumerate(ids):
            await enc.put(rid, f"secret-{i}".encode())
        absent = enc.record_id("t1", "", "doc", "absent")
        got = await enc.get_many([ids[2], absent, ids[0], ids[2]])
        assert [None if e is None else e.data for e in got] == [
            b"secret-2", None, b"secret-0", b"secret-2"]  # fmt: skip
        raw = await store.get(ids[1])
        assert raw is not None
        flipped = bytearray(raw.body)
        flipped[-1] ^= 0x01
        await store.put(replace(raw, body=bytes(flipped)))
        with pytest.raises(IntegrityError):
            await enc.get_many([ids[0], ids[1]])

    async def test_encrypted_record_under_unknown_key_is_refused(self, store: Store) -> None:
        """A record written under a key the reader lacks raises KeyUnavailableError."""
        writer = EncryptedStore(store, deterministic_key_ring("writer"), tenant="acme")
        reader = EncryptedStore(store, deterministic_key_ring("reader"), tenant="acme")
        rid = writer.record_id("t1", "", "doc", "a")
        await writer.put(rid, b"data")
        with pytest.raises(KeyUnavailableError):
            await reader.get(rid)
