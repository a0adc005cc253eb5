"""`ValueStore`: channel values stored once per version, growing lists as appended tails."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from checkpointers.encrypted import EncryptedStore, Write
from checkpointers.errors import IntegrityError
from checkpointers.record import Record, RecordId
from checkpointers.values._format import (
    decode_blob,
    encode_full,
    encode_tail,
    value_key,
    value_keys,
)
from checkpointers.values._heads import Head
from checkpointers.values._lists import ListCache, ListKey, ListState

#: A value stored as an appended tail is stored in full again after this many links.
MAX_TAIL_CHAIN = 50
#: The record kind of channel values.
BLOB = "blob"


class ValueCodec(Protocol):
    """Turns a value, or one item of a list value, into (type tag, bytes) and back.

    `what` names the value in error messages (never the value itself).
    """

    def dumps(self, value: Any, what: str) -> tuple[bytes, bytes]:
        """(type tag, bytes) of `value`; raises `SerializationError` when it cannot."""
        ...

    def loads(self, type_tag: bytes, data: bytes, what: str) -> Any:
        """The value of (type tag, bytes); raises `SerializationError` when it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class Prefetched:
    """The value records of a `Head`, read before the snapshot they belong to was known."""

    head: Head
    records: Sequence[Record | None]


@dataclass(slots=True)
class _Chain:
    """A channel value being rebuilt from its blob and the blobs it appends to."""

    channel: str
    head: str
    current: str
    pieces: list[Any] = field(default_factory=list)
    base: ListState | None = None


class ValueStore:
    """Channel values of (thread, namespace) in an `EncryptedStore`, one record each.

    A value is stored once per (thread, namespace, channel, version), insert-if-absent,
    under the key `value_key(channel, version)`. With `append_only`, a list value that
    extends the list this process last stored or read for its channel is stored as the
    appended items plus the key of the previous blob (also its record's `group`), with
    a full copy every `MAX_TAIL_CHAIN` links; the latest lists are cached (`ListCache`).

    Args:
        store: the encrypted store (borrowed).
        codec: how values and list items become bytes.
        lists: the list cache (shared with other value stores of the same data).
        append_only: store appended tails instead of full copies.
    """

    def __init__(
        self,
        store: EncryptedStore,
        codec: ValueCodec,
        *,
        lists: ListCache | None = None,
        append_only: bool = True,
    ) -> None:
        self._store = store
        self._codec = codec
        self._lists = ListCache() if lists is None else lists
        self._append_only = append_only

    def record_id(self, thread: str, namespace: str, key: str) -> RecordId:
        """The id of the value record `key` of (thread, namespace)."""
        return self._store.record_id(thread, namespace, BLOB, key)

    # -- writes -----------------------------------------------------------------------

    async def put(
        self,
        thread: str,
        namespace: str,
        versions: Mapping[str, Any],
        values: Mapping[str, Any],
        *,
        with_records: Sequence[Write] = (),
    ) -> None:
        """Store `values[channel]` at `versions[channel]` for every channel in both, and
        `with_records`, insert-if-absent, in one atomic `EncryptedStore.write`.

        Raises:
            SerializationError: a value cannot be serialized.
            RecordTooLargeError: a record is above the store's size cap.
            StoreUnavailableError: the backend failed (nothing or everything is stored).
        """
        states: dict[ListKey, ListState] = {}
        items = [
            self._write(thread, namespace, channel, version, values[channel], states)
            for channel, version in versions.items()
            if channel in values
        ]
        items.extend(with_records)
        await self._store.write(items, if_absent=True)
        self._lists.remember(states)

    def _write(
        self,
        thread: str,
        namespace: str,
        channel: str,
        version: Any,
        value: Any,
        states: dict[ListKey, ListState],
    ) -> Write:
        codec = self._codec
        key = value_key(channel, version)
        what = f"channel {channel!r}"
        body: bytes | None = None
        group = ""
        if self._append_only and type(value) is list and isinstance(version, str):
            state = ListState.of(key, 0, [codec.dumps(item, what) for item in value])
            prev = self._lists.peek((thread, namespace, channel))
            if (
                prev is not None
                and prev.key != key
                and 0 < len(prev.digests) <= len(state.digests)
                and prev.depth + 1 < MAX_TAIL_CHAIN
                and state.digests[: len(prev.digests)] == prev.digests
            ):
                tail_type, tail_data = codec.dumps(value[len(prev.digests) :], what)
                body = encode_tail(tail_type, tail_data, prev.key)
                group = prev.key
                state = ListState(key, prev.depth + 1, state.digests, state.items, state.size)
            states[(thread, namespace, channel)] = state
        if body is None:
            body = encode_full(*codec.dumps(value, what))
        return Write(self.record_id(thread, namespace, key), body, group=group)

    # -- reads ------------------------------------------------------------------------

    async def prefetch(self, thread: str, namespace: str, head: Head) -> Prefetched:
        """Read the value records of `head` (one `get_many_records`), for `load`.

        Raises:
            IntegrityError, StoreUnavailableError: as `EncryptedStore.get_many_records`.
        """
        if head.ids is None:
            head.ids = tuple(self.record_id(thread, namespace, k) for k in head.keys.values())
        return Prefetched(head, await self._store.get_many_records(head.ids))

    async def load(
        self,
        thread: str,
        namespace: str,
        versions: Mapping[str, Any],
        prefetched: Prefetched | None = None,
    ) -> dict[str, Any]:
        """The values at `versions` (channel -> version); channels with none are left out.

        The blobs are read in one `get_many_records` (none if `prefetched` holds them);
        a value stored as appended tails is rebuilt level by level (one read per level
        for every channel at once), stopping at the list value this process cached if the
        chain reaches it. A blob whose whole value is cached is not even decrypted: the
        read only checks that it still exists.

        Raises:
            IntegrityError: a record was tampered with, moved, or a chain is broken.
            KeyUnavailableError: a record's key is not in the key ring.
            SerializationError: a stored value cannot be deserialized.
            StoreUnavailableError: the backend failed.
        """
        keys = None if prefetched is None else prefetched.head.keys_for(versions)
        first = None if keys is None or prefetched is None else prefetched.records
        if keys is None:
            keys = value_keys(versions)
        out: dict[str, Any] = {}
        chains = [_Chain(channel, key, key) for channel, key in keys.items()]
        depth = 0
        while chains:
            records: Sequence[Record | None]
            if first is None:
                ids = [self.record_id(thread, namespace, c.current) for c in chains]
                records = await self._store.get_many_records(ids)
            else:
                records, first = first, None
            walking: list[_Chain] = []
            for chain, record in zip(chains, records, strict=True):
                if record is None:
                    if chain.pieces:
                        rid = self.record_id(thread, namespace, chain.current)
                        raise IntegrityError(f"{rid.describe()}: missing base of an appended value")
                    continue  # the channel has no stored value
                what = record.id.describe()
                if depth > MAX_TAIL_CHAIN:
                    raise IntegrityError(f"{what}: chain of appended values too long")
                list_key = (thread, namespace, chain.channel)
                cached = self._lists.hit(list_key, chain.current)
                if cached is None:
                    entry = await self._store.open(record)
                    type_tag, data, base = decode_blob(entry.data, what)
                    chain.pieces.append(self._codec.loads(type_tag, data, what))
                    if base is not None:
                        cached = self._lists.hit(list_key, base)
                        if cached is None:
                            chain.current = base
                            walking.append(chain)
                            continue
                chain.base = cached  # None, or the cached whole value below the pieces
                out[chain.channel] = self._assemble(list_key, chain, what)
            chains = walking
            depth += 1
        return out

    def _assemble(self, list_key: ListKey, chain: _Chain, what: str) -> Any:
        """The value of a resolved chain; a list value is cached as the channel's latest
        unless a state the chain did not pass through (maybe newer) is cached."""
        codec = self._codec
        pieces = chain.pieces  # newest first
        base = chain.base
        value: Any = (
            [codec.loads(t, d, what) for t, d in base.items] if base is not None else pieces.pop()
        )
        appended = [item for piece in reversed(pieces) for item in piece]
        if appended:
            value = [*value, *appended]
        if not (self._append_only and type(value) is list):
            return value
        current = self._lists.peek(list_key)
        if current is None and base is None:
            items = [codec.dumps(item, what) for item in value]
            self._lists.remember({list_key: ListState.of(chain.head, len(pieces), items)})
        elif base is not None and current is base and base.key != chain.head:
            items = [*base.items, *(codec.dumps(item, what) for item in appended)]
            state = ListState.of(chain.head, base.depth + len(pieces), items)
            self._lists.remember({list_key: state})
        return value

    # -- maintenance --------------------------------------------------------------------

    def forget(self, threads: Iterable[str]) -> None:
        """Drop what the list cache holds for `threads` (deleted, replaced or pruned)."""
        self._lists.forget(threads)

    @staticmethod
    def unreferenced(
        blobs: Sequence[Record], kept_versions: Iterable[Mapping[str, Any]]
    ) -> list[RecordId]:
        """The value records among `blobs` (of one thread and namespace) that no kept
        snapshot needs: neither named by one of `kept_versions` nor the base of one."""
        by_key = {r.id.key: r for r in blobs}
        live: set[str] = set()
        todo = [value_key(ch, v) for versions in kept_versions for ch, v in versions.items()]
        while todo:
            key = todo.pop()
            if key in live or key not in by_key:
                continue
            live.add(key)
            if by_key[key].group:
                todo.append(by_key[key].group)
        return [r.id for r in blobs if r.id.key not in live]

    def __repr__(self) -> str:
        return f"ValueStore(store={self._store!r}, lists={self._lists!r})"
