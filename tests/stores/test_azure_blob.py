"""`AzureBlobStore` on Azurite: the shared suite plus what is specific to Blob Storage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.storage.blob.aio import ContainerClient

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import (
    ConfigurationError,
    ConflictError,
    StoreUnavailableError,
)
from checkpointers.record import Query, Record, RecordId
from checkpointers.stores import azure_blob
from checkpointers.stores._azure_blob_layout import (
    decode_component,
    encode_component,
    parse_name,
)
from checkpointers.stores.azure_blob import AzureBlobStore
from checkpointers.stores.base import Store
from checkpointers.testing import StoreContract, deterministic_key_ring
from checkpointers.urls import open_store
from tests.harness.azurite import Azurite


def _container_name() -> str:
    return f"cp-{uuid.uuid4().hex[:20]}"


@pytest.fixture
async def container(azurite: Azurite) -> AsyncIterator[ContainerClient]:
    """A fresh container on Azurite (deleted after the test) with a borrowed client."""
    client = ContainerClient.from_connection_string(
        azurite.connection_string, _container_name(), retry_total=1
    )
    async with client:
        await client.create_container()
        yield client
        if azurite.running:
            await client.delete_container()


@pytest.fixture
async def blob_store(container: ContainerClient) -> AsyncIterator[AzureBlobStore]:
    """A set-up store on the test's container."""
    async with AzureBlobStore(container, prefix="cp/") as store:
        yield store


class TestAzureBlobStore(StoreContract):
    @pytest.fixture
    async def store(self, blob_store: AzureBlobStore) -> Store:
        return blob_store


def _rid(key: str = "k", thread: str = "t1") -> RecordId:
    return RecordId("acme", thread, "", "doc", key)


async def _blob_texts(container: ContainerClient) -> list[bytes]:
    """Every byte an operator could see in the container: names, content, metadata, tags."""
    seen: list[bytes] = []
    async for item in container.list_blobs(include=["metadata", "tags"]):
        seen.append(item.name.encode())
        seen.append(repr(item.metadata).encode())
        seen.append(repr(item.tags).encode())
        stream = await container.get_blob_client(item.name).download_blob()
        seen.append(await stream.readall())
    return seen


def test_component_encoding_round_trips_any_id() -> None:
    """Any id encodes to a safe, non-empty path component and decodes back."""
    for value in ["", ".", "..", "a/b", "~", "%41", "naïve ü", "x" * 50, "tab\there", "-_"]:
        encoded = encode_component(value)
        assert encoded and "/" not in encoded and encoded not in (".", "..")
        assert not encoded.endswith(".")
        assert decode_component(encoded) == value
    assert decode_component("%41") is None  # not canonical: "A" is written as is
    assert parse_name("cp/", "cp/not-ours.txt") is None


async def test_odd_identities_round_trip(blob_store: AzureBlobStore) -> None:
    """Ids with slashes, dots, spaces, non-ASCII and empty parts are stored and listed."""
    rids = [RecordId("acme", "a/b", "..", "doc", "naïve ü"), RecordId("acme", "", "", "doc", ".")]
    for n, rid in enumerate(rids):
        await blob_store.put(Record(id=rid, body=b"x", sort=f"{n}"))
        got = await blob_store.get(rid)
        assert got is not None and got.id == rid
    assert sorted(r.id for r in await blob_store.scan()) == sorted(rids)


async def test_etag_race_between_two_archivers_has_one_winner(
    container: ContainerClient,
) -> None:
    """Two stores inserting the same record at once: exactly one succeeds."""
    rid = _rid()
    async with (
        AzureBlobStore(container, prefix="cp/") as one,
        AzureBlobStore(container, prefix="cp/") as two,
    ):

        async def insert(store: AzureBlobStore, body: bytes) -> bool:
            try:
                await store.put(Record(id=rid, body=body), expected_version=0)
            except ConflictError:
                return False
            return True

        results = await asyncio.gather(insert(one, b"one"), insert(two, b"two"))
        assert sorted(results) == [False, True]
        got = await one.get(rid)
        assert got is not None and got.version == 1


async def test_stale_etag_write_is_a_conflict(
    blob_store: AzureBlobStore, container: ContainerClient
) -> None:
    """A blob changed behind the store's back makes a versioned write raise ConflictError."""
    rid = _rid()
    await blob_store.put(Record(id=rid, body=b"v1"))
    name = "cp/acme/t1/~/doc/k"
    blob = container.get_blob_client(name)
    props = await blob.get_blob_properties()
    metadata = dict(props.metadata)
    metadata["cp_version"] = "7"
    await blob.set_blob_metadata(metadata)
    with pytest.raises(ConflictError):
        await blob_store.put(Record(id=rid, body=b"v2"), expected_version=1)
    assert await blob_store.put(Record(id=rid, body=b"v8"), expected_version=7) == 8


async def test_no_plaintext_canary_in_any_blob(
    blob_store: AzureBlobStore, container: ContainerClient
) -> None:
    """After writes through EncryptedStore, no blob name, body, metadata or tag holds the canary."""
    canary = f"canary-{uuid.uuid4().hex}"
    enc = EncryptedStore(blob_store, deterministic_key_ring(), tenant="acme")
    for n in range(3):
        rid = enc.record_id("run-1", "", "snap", f"s{n}")
        await enc.put(rid, f"{canary} state {n}".encode() * 50, index={"note": canary})
    assert len(await enc.find(enc.query(thread="run-1", kind="snap"))) == 3
    seen = await _blob_texts(container)
    assert len(seen) >= 12
    assert not any(canary.encode() in text for text in seen)


async def test_azurite_stopped_raises_store_unavailable(
    azurite: Azurite, container: ContainerClient
) -> None:
    """With Azurite down, reads, writes and ping raise StoreUnavailableError, never a driver error."""
    client = ContainerClient.from_connection_string(
        azurite.connection_string, container.container_name, retry_total=0
    )
    async with client, AzureBlobStore(client) as store:
        await store.put(Record(id=_rid(), body=b"x"))
        azurite.stop()
        with pytest.raises(StoreUnavailableError) as read:
            await store.get(_rid())
        assert read.value.may_have_applied is False
        with pytest.raises(StoreUnavailableError):
            await store.put(Record(id=_rid("k2"), body=b"y"))
        with pytest.raises(StoreUnavailableError):
            await store.ping()
        assert "AccountKey" not in str(read.value)


async def test_refused_delete_is_a_conflict_and_keeps_the_blob(
    blob_store: AzureBlobStore, container: ContainerClient
) -> None:
    """A delete the service refuses (a lease, standing in for immutability) raises ConflictError."""
    held, free = _rid("held"), _rid("free")
    await blob_store.put_many([Record(id=held, body=b"a"), Record(id=free, body=b"b")])
    blob = container.get_blob_client("cp/acme/t1/~/doc/held")
    lease = await blob.acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(ConflictError, match="LeaseIdMissing"):
            await blob_store.delete([held])
        with pytest.raises(ConflictError, match="protected"):
            await blob_store.delete_thread("acme", "t1")
        with pytest.raises(ConflictError):
            await blob_store.put(Record(id=held, body=b"new"))
        assert await blob_store.get(free) is None
        got = await blob_store.get(held)
        assert got is not None and got.body == b"a"
    finally:
        await lease.release()
    assert await blob_store.delete([held]) == 1


async def test_put_many_is_best_effort_and_says_so(
    blob_store: AzureBlobStore, container: ContainerClient
) -> None:
    """A batch hitting a protected blob writes the others and raises (no atomicity on Blob)."""
    await blob_store.put(Record(id=_rid("held"), body=b"a"))
    lease = await container.get_blob_client("cp/acme/t1/~/doc/held").acquire_lease(-1)
    try:
        with pytest.raises(ConflictError):
            await blob_store.put_many([Record(id=_rid(k), body=b"n") for k in ("a", "held", "b")])
    finally:
        await lease.release()
    assert {r.id.key for r in await blob_store.scan()} == {"a", "held", "b"}


async def test_find_by_tags_and_sweep_use_the_blob_index(blob_store: AzureBlobStore) -> None:
    """Index tags find records by tenant, thread and status, and let sweep find expired ones."""
    now = time.time()
    await blob_store.put_many([
        Record(id=_rid("p1", "run-a"), body=b"x", status="pending"),
        Record(id=_rid("p2", "run-b"), body=b"x", status="pending"),
        Record(id=_rid("d1", "run-a"), body=b"x", status="done", expires_at=now - 5),
    ])  # fmt: skip
    pending = await blob_store.find_by_tags("acme", status="pending")
    assert [r.key for r in pending] == ["p1", "p2"]
    assert [r.key for r in await blob_store.find_by_tags("acme", thread="run-a")] == ["d1", "p1"]
    assert await blob_store.sweep(now=now) == 1
    assert [r.id.key for r in await blob_store.scan()] == ["p1", "p2"]


async def test_unknown_url_option_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, azurite: Azurite
) -> None:
    """A typo in a URL option fails, naming the option and never the connection string."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    with pytest.raises(ConfigurationError, match="'prefx'") as info:
        open_store("azblob://checkpoints?prefx=a/")
    assert "AccountKey" not in str(info.value)
    with pytest.raises(ConfigurationError):
        open_store("azblob://Bad_Container")
    with pytest.raises(ConfigurationError):
        open_store("https://example.com/container")


async def test_azblob_url_owns_and_closes_its_client(
    monkeypatch: pytest.MonkeyPatch, azurite: Azurite
) -> None:
    """azblob:// builds a client from the connection string, can create the container, closes it."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    name = _container_name()
    store, common = open_store(f"azblob://{name}?prefix=x/&create_container=true&ttl=60")
    assert isinstance(store, AzureBlobStore) and common == {"ttl": 60.0}
    closed: list[bool] = []
    async with store:
        await store.put(Record(id=_rid(), body=b"x"))
        assert [r.id for r in await store.find(Query(tenant="acme"))] == [_rid()]
        client = store._container()
        await client.delete_container()
        real_close = client.close

        async def spy() -> None:
            closed.append(True)
            await real_close()

        monkeypatch.setattr(client, "close", spy)
    assert closed == [True]


async def test_borrowed_client_is_not_closed(container: ContainerClient) -> None:
    """Closing a store built on a caller's client leaves the client usable."""
    async with AzureBlobStore(container) as store:
        await store.put(Record(id=_rid(), body=b"x"))
    await store.aclose()
    props = await container.get_container_properties()
    assert props.name == container.container_name


class _RecordingCredential:
    """An AsyncTokenCredential that must never be asked for a token here."""

    def __init__(self) -> None:
        self.closed = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no token may be requested in this test")

    async def close(self) -> None:
        self.closed += 1


async def test_https_url_borrows_the_callers_credential() -> None:
    """https:// with credential= uses it and never closes it; nothing is sent before use."""
    credential = _RecordingCredential()
    store, _ = open_store(
        "https://acct.blob.core.windows.net/archive?prefix=cp/", credential=credential
    )
    assert isinstance(store, AzureBlobStore)
    assert (store.container_name, store.prefix) == ("archive", "cp/")
    client = store._container()
    assert client.url.startswith("https://acct.blob.core.windows.net/archive")
    await store.aclose()
    assert credential.closed == 0


async def test_https_url_without_credential_makes_and_closes_a_default_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without credential=, a default credential is made on first use only, and closed by us."""
    made: list[_RecordingCredential] = []

    def factory() -> _RecordingCredential:
        made.append(_RecordingCredential())
        return made[-1]

    monkeypatch.setattr(azure_blob, "_default_credential", factory)
    unused, _ = open_store("https://acct.blob.core.windows.net/archive")
    await unused.aclose()
    assert made == []
    store, _ = open_store("https://acct.blob.core.windows.net/archive")
    assert isinstance(store, AzureBlobStore)
    store._container()
    await store.aclose()
    assert [c.closed for c in made] == [1]


async def test_unquoted_listing_etag_still_guards_writes(
    blob_store: AzureBlobStore, container: ContainerClient
) -> None:
    """A claim with an ETag taken from a listing loses cleanly when the blob changed."""
    rid = RecordId("acme", "run", "", "snap", "s0")
    await blob_store.put(Record(id=rid, body=b"x", status="created"))
    blob = container.get_blob_client("cp/acme/run/~/snap/s0")
    props = await blob.get_blob_properties()
    await blob.set_blob_metadata(
        dict(props.metadata), etag=props.etag, match_condition=MatchConditions.IfNotModified
    )
    from checkpointers.record import Claim

    claimed = await blob_store.claim(Claim("acme", "run", "snap", ("created",), "pending"))
    assert claimed is not None and claimed.status == "pending"


class _StubResponse:
    """Just enough of an azure-core HTTP response to build response-bound exceptions."""

    status_code = 500
    reason = "Internal Server Error"
    headers: dict[str, str] = {}  # noqa: RUF012
    request = None
    content_type = "application/json"

    def text(self, encoding: str | None = None) -> str:
        return ""

    def body(self) -> bytes:
        return b""


def _azure_error_classes() -> list[type[BaseException]]:
    import azure.core.exceptions as core

    seen: list[type[BaseException]] = []
    stack: list[type[BaseException]] = [core.AzureError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


@pytest.mark.parametrize("error_class", _azure_error_classes(), ids=lambda c: c.__name__)
def test_every_azure_error_is_translated(error_class: type[BaseException]) -> None:
    """Every azure-core exception class raised at the store boundary becomes a checkpointers error."""
    from checkpointers.errors import CheckpointersError

    error: BaseException | None = None
    for args, kwargs in (((), {"response": _StubResponse()}), (("boom",), {})):
        try:
            error = error_class(*args, **kwargs)
            break
        except (TypeError, AttributeError):
            continue
    if error is None:
        # Some classes need SDK internals to construct: build one without __init__.
        error = error_class.__new__(error_class)
        BaseException.__init__(error, "boom")
    store = AzureBlobStore(ContainerClient("http://127.0.0.1:1/acct", "container"))
    with pytest.raises(CheckpointersError) as info, store._boundary("read", write=False):
        raise error
    assert info.value.__cause__ is error
