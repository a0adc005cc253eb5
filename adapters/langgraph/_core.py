"""The async implementation of the LangGraph saver over `EncryptedStore`.

`checkpointers.langgraph.CheckpointSaver` adds the lifecycle and the sync facade on top.
The record layout is described in `checkpointers.langgraph._codec`.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)

from checkpointers import (
    ConfigurationError,
    EncryptedStore,
    Entry,
    IntegrityError,
    Record,
    RecordId,
    Write,
)

from . import _codec as codec

#: A channel value stored as an appended tail is re-stored in full after this many links.
MAX_TAIL_CHAIN = 50
#: How many (thread, namespace, channel) list states the append-only cache remembers.
TAIL_CACHE_SIZE = 4096
#: How many bytes of serialized list items the append-only cache holds, at most.
TAIL_CACHE_BYTES = 32 * 1024 * 1024

Item = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class _ListState:
    """The latest value this process stored or read for a list channel.

    `key` is the blob holding it, `depth` the number of appended tails below that blob,
    `items` the serialized list items (type tag, bytes) and `digests` theirs. Blob
    contents never change under a key (versions are unique and blobs insert-if-absent),
    so a state stays true for as long as its blob exists. Items are kept serialized:
    each read deserializes fresh objects, so a caller mutating what it got can never
    alter what later reads return.
    """

    key: str
    depth: int
    digests: tuple[bytes, ...]
    items: tuple[Item, ...]
    size: int


def _list_state(key: str, depth: int, items: Sequence[Item]) -> _ListState:
    return _ListState(
        key,
        depth,
        tuple(codec.digest(t, d) for t, d in items),
        tuple(items),
        sum(len(t) + len(d) for t, d in items),
    )


@dataclass(slots=True)
class _Head:
    """The newest checkpoint this process put or read for a (thread, namespace): a guess
    that lets `get_tuple` read it, its writes and its values in one round trip."""

    checkpoint_id: str
    versions: dict[str, Any]  # channel -> version, as in the checkpoint
    keys: dict[str, str]  # channel -> blob key
    rids: tuple[RecordId, ...] | None = None  # the blob records of `keys`, once needed


@dataclass(slots=True)
class _Chain:
    """A channel value being rebuilt from its blob and the blobs it appends to."""

    channel: str
    head: str
    current: str
    pieces: list[Any]
    base: _ListState | None = None


def _same_versions(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether `a` and `b` name the same blob keys, without computing them: equal
    mappings of exactly-typed str or int versions (`1 == 1.0 == True`, yet their keys
    differ); any other version type counts as different, so its keys get compared."""
    if a != b:
        return False
    for channel, version in a.items():
        kind = type(version)
        if (kind is not str and kind is not int) or type(b[channel]) is not kind:
            return False
    return True


def configurable(config: RunnableConfig) -> dict[str, Any]:
    conf = config.get("configurable")
    if not isinstance(conf, dict):
        raise ConfigurationError("the config has no 'configurable' section")
    return conf


def thread_of(conf: Mapping[str, Any]) -> str:
    thread = conf.get("thread_id")
    if thread is None or str(thread) == "":
        raise ConfigurationError("the config needs a non-empty configurable.thread_id")
    return str(thread)


def _config(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class SaverCore(BaseCheckpointSaver[str]):
    """All storage logic of the saver, async only (see `CheckpointSaver`)."""

    _store: EncryptedStore
    _append_only: bool
    _list_cache: OrderedDict[tuple[str, str, str], _ListState]

    _list_cache_bytes: int
    _heads: OrderedDict[tuple[str, str], _Head]

    def _init_core(self, store: EncryptedStore, *, append_only: bool) -> None:
        self._store = store
        self._append_only = append_only
        self._list_cache = OrderedDict()
        self._list_cache_bytes = 0
        self._heads = OrderedDict()

    def _rid(self, thread: str, ns: str, kind: str, key: str) -> RecordId:
        return self._store.record_id(thread, ns, kind, key)

    # -- channel values -------------------------------------------------------------

    def _blob_record(
        self,
        thread: str,
        ns: str,
        channel: str,
        version: Any,
        value: Any,
        states: dict[tuple[str, str, str], _ListState],
    ) -> Write:
        serde = self.serde
        key = codec.blob_key(channel, version)
        what = f"channel {channel!r}"
        body: bytes | None = None
        group = ""
        if self._append_only and type(value) is list and isinstance(version, str):
            items = [codec.dumps(serde, item, what) for item in value]
            prev = self._list_cache.get((thread, ns, channel))
            depth = 0
            state = _list_state(key, 0, items)
            if (
                prev is not None
                and prev.key != key
                and 0 < len(prev.digests) <= len(state.digests)
                and prev.depth + 1 < MAX_TAIL_CHAIN
                and state.digests[: len(prev.digests)] == prev.digests
            ):
                tail_type, tail_data = codec.dumps(serde, value[len(prev.digests) :], what)
                body = codec.encode_tail(tail_type, tail_data, prev.key)
                group = prev.key
                depth = prev.depth + 1
            states[(thread, ns, channel)] = _ListState(
                key, depth, state.digests, state.items, state.size
            )
        if body is None:
            body = codec.encode_full(*codec.dumps(serde, value, what))
        return Write(self._rid(thread, ns, codec.BLOB, key), body, group=group)

    def _remember(self, states: Mapping[tuple[str, str, str], _ListState]) -> None:
        """Keep `states` as the latest list values, least recently used out first."""
        cache = self._list_cache
        for cache_key, state in states.items():
            old = cache.pop(cache_key, None)
            if old is not None:
                self._list_cache_bytes -= old.size
            if state.size > TAIL_CACHE_BYTES:
                continue
            cache[cache_key] = state
            self._list_cache_bytes += state.size
        while len(cache) > TAIL_CACHE_SIZE or self._list_cache_bytes > TAIL_CACHE_BYTES:
            _, evicted = cache.popitem(last=False)
            self._list_cache_bytes -= evicted.size

    def _forget(self, threads: Iterable[str]) -> None:
        gone = set(threads)
        for cache_key in [k for k in self._list_cache if k[0] in gone]:
            self._list_cache_bytes -= self._list_cache.pop(cache_key).size
        for head_key in [k for k in self._heads if k[0] in gone]:
            del self._heads[head_key]

    def _note_head(
        self, thread: str, ns: str, checkpoint_id: str, versions: Mapping[str, Any]
    ) -> None:
        head = self._heads.get((thread, ns))
        if (
            head is None
            or head.checkpoint_id != checkpoint_id
            or not _same_versions(head.versions, versions)
        ):
            head = _Head(checkpoint_id, dict(versions), self._blob_keys(versions))
        self._heads[(thread, ns)] = head
        self._heads.move_to_end((thread, ns))
        while len(self._heads) > TAIL_CACHE_SIZE:
            self._heads.popitem(last=False)

    @staticmethod
    def _blob_keys(versions: Mapping[str, Any]) -> dict[str, str]:
        return {ch: codec.blob_key(ch, v) for ch, v in versions.items()}

    def _cached(self, thread: str, ns: str, channel: str, key: str) -> _ListState | None:
        """The cached list state of `channel` if it is the value of blob `key`."""
        state = self._list_cache.get((thread, ns, channel))
        if state is None or state.key != key:
            return None
        self._list_cache.move_to_end((thread, ns, channel))
        return state

    def _items(self, state: _ListState, what: str) -> list[Any]:
        return [codec.loads(self.serde, t, d, what) for t, d in state.items]

    async def _load_values(
        self,
        thread: str,
        ns: str,
        keys: Mapping[str, str],
        first: Sequence[Record | None] | None = None,
    ) -> dict[str, Any]:
        """The values of blobs `keys` (channel -> blob key); absent ones are left out.

        The blobs are read in one `get_many` (or given as `first`, in the order of
        `keys`); a value stored as appended tails is rebuilt level by level (one
        `get_many` per level for every channel at once), stopping at the list value this
        process cached if the chain reaches it. A blob whose whole value is cached is
        not even decrypted: the read only checks that it still exists.
        """
        out: dict[str, Any] = {}
        chains = [_Chain(ch, key, key, []) for ch, key in keys.items()]
        depth = 0
        while chains:
            records: Sequence[Record | None]
            if first is None:
                rids = [self._rid(thread, ns, codec.BLOB, c.current) for c in chains]
                records = await self._store.get_many_records(rids)
            else:
                records, first = first, None
            walking: list[_Chain] = []
            for chain, record in zip(chains, records, strict=True):
                if record is None:
                    if chain.pieces:
                        rid = self._rid(thread, ns, codec.BLOB, chain.current)
                        raise IntegrityError(f"{rid.describe()}: missing base of an appended value")
                    continue  # the channel has no stored value
                what = record.id.describe()
                if depth > MAX_TAIL_CHAIN:
                    raise IntegrityError(f"{what}: chain of appended values too long")
                cached = self._cached(thread, ns, chain.channel, chain.current)
                if cached is not None:
                    chain.base = cached  # the cache holds this blob's whole value
                    out[chain.channel] = self._assemble(thread, ns, chain, what)
                    continue
                entry = await self._store.open(record)
                type_tag, data, base = codec.decode_blob(entry.data, what)
                chain.pieces.append(codec.loads(self.serde, type_tag, data, what))
                if base is not None:
                    hit = self._cached(thread, ns, chain.channel, base)
                    if hit is None:
                        chain.current = base
                        walking.append(chain)
                        continue
                    chain.base = hit
                out[chain.channel] = self._assemble(thread, ns, chain, what)
            chains = walking
            depth += 1
        return out

    def _assemble(self, thread: str, ns: str, chain: _Chain, what: str) -> Any:
        """The value of a resolved chain; a list value is cached as the channel's latest
        unless a state the chain did not pass through (maybe newer) is cached."""
        pieces = chain.pieces  # newest first
        base = chain.base
        value: Any = self._items(base, what) if base is not None else pieces.pop()
        appended = [item for piece in reversed(pieces) for item in piece]
        if appended:
            value = [*value, *appended]
        if not (self._append_only and type(value) is list):
            return value
        cache_key = (thread, ns, chain.channel)
        current = self._list_cache.get(cache_key)
        if current is None and base is None:
            items = [codec.dumps(self.serde, item, what) for item in value]
            self._remember({cache_key: _list_state(chain.head, len(pieces), items)})
        elif base is not None and current is base and base.key != chain.head:
            items = [*base.items, *(codec.dumps(self.serde, item, what) for item in appended)]
            state = _list_state(chain.head, base.depth + len(pieces), items)
            self._remember({cache_key: state})
        return value

    # -- writes ---------------------------------------------------------------------

    async def _writes_of(
        self, thread: str, ns: str, checkpoint_id: str
    ) -> list[tuple[str, str, Any]]:
        """Pending writes of a checkpoint as (task id, channel, value), sorted."""
        query = self._store.query(
            kind=codec.WRITE, thread=thread, namespace=ns, group=checkpoint_id
        )
        rows = []
        for entry in await self._store.find(query):
            what = entry.id.describe()
            _, task_id, idx = codec.parse_write_key(entry.id.key)
            channel, task_path, type_tag, data = codec.decode_write(entry.data, what)
            value = codec.loads(self.serde, type_tag, data, what)
            rows.append((writes_sort_key(task_path, task_id, idx), task_id, channel, value))
        rows.sort(key=lambda row: row[0])
        return [(task_id, channel, value) for _, task_id, channel, value in rows]

    # -- tuples -----------------------------------------------------------------------

    async def _tuple(
        self,
        entry: Entry,
        writes: list[tuple[str, str, Any]] | None = None,
        guess: tuple[_Head, Sequence[Record | None]] | None = None,
    ) -> CheckpointTuple:
        """The tuple of a checkpoint record: its values and writes, read concurrently
        (one `get_many` and one query), unless `writes` were read already, or `guess`
        (a head and its blobs, read before the checkpoint was known) holds its values."""
        rid = entry.id
        checkpoint, metadata, parent = codec.decode_checkpoint(
            self.serde, entry.data, rid.describe()
        )
        versions = checkpoint["channel_versions"]
        first: Sequence[Record | None] | None = None
        if guess is not None and _same_versions(guess[0].versions, versions):
            keys, first = guess[0].keys, guess[1]  # `first` is in the order of these keys
        else:
            keys = self._blob_keys(versions)
            if guess is not None and guess[0].keys == keys:
                keys, first = guess[0].keys, guess[1]
        if writes is None:
            values, writes = await asyncio.gather(
                self._load_values(rid.thread, rid.namespace, keys, first),
                self._writes_of(rid.thread, rid.namespace, rid.key),
            )
        else:
            values = await self._load_values(rid.thread, rid.namespace, keys, first)
        checkpoint["channel_values"] = values
        return CheckpointTuple(
            config=_config(rid.thread, rid.namespace, rid.key),
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=metadata,  # type: ignore[arg-type]
            parent_config=_config(rid.thread, rid.namespace, parent) if parent else None,
            pending_writes=list(writes),
        )

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch a checkpoint: the one named by `checkpoint_id`, else the newest.

        Raises:
            IntegrityError: a record was tampered with, moved or is not encrypted.
            KeyUnavailableError: a record's key is not in the key ring.
            SerializationError: a stored value cannot be deserialized.
            StoreUnavailableError: the backend failed.
        """
        conf = configurable(config)
        thread, ns = thread_of(conf), str(conf.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            # The checkpoint and its writes at once, then its values: two round trips.
            rid = self._rid(thread, ns, codec.CHECKPOINT, checkpoint_id)
            entry, writes = await asyncio.gather(
                self._store.get(rid), self._writes_of(thread, ns, checkpoint_id)
            )
            return None if entry is None else await self._tuple(entry, writes)
        latest = self._store.latest(
            self._store.query(kind=codec.CHECKPOINT, thread=thread, namespace=ns)
        )
        head = self._heads.get((thread, ns))
        if head is None:
            found = await latest
            guess = None
            writes = None
        else:
            # Most often the newest checkpoint is the one this process last put or read:
            # read it, its writes and its values at once (one round trip), then check.
            if head.rids is None:
                head.rids = tuple(self._rid(thread, ns, codec.BLOB, k) for k in head.keys.values())
            found, head_writes, blobs = await asyncio.gather(
                latest,
                self._writes_of(thread, ns, head.checkpoint_id),
                self._store.get_many_records(head.rids),
            )
            hit = found is not None and found.id.key == head.checkpoint_id
            guess = (head, blobs) if hit else None
            writes = head_writes if hit else None
        if found is None:
            return None
        item = await self._tuple(found, writes, guess)
        self._note_head(thread, ns, found.id.key, item.checkpoint["channel_versions"])
        return item

    async def _list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """List checkpoints, newest first.

        `config=None` lists every thread; a config without `checkpoint_ns` lists every
        namespace; `filter` matches metadata keys exactly, through blind-index tokens.

        Raises:
            IntegrityError, KeyUnavailableError, SerializationError,
            StoreUnavailableError: as `aget_tuple`.
        """
        conf = configurable(config) if config is not None else {}
        thread = thread_of(conf) if config is not None else None
        ns = conf.get("checkpoint_ns")
        only_id = get_checkpoint_id(config) if config is not None else None
        wanted = {k: codec.index_value(v) for k, v in (filter or {}).items()}
        if not all(codec.is_indexable(v) for v in wanted.values()):
            return  # such a value was never indexed: nothing can match
        tokens = await self._store.tokens(wanted) if wanted else frozenset()
        query = self._store.query(
            kind=codec.CHECKPOINT,
            thread=thread,
            namespace=None if ns is None else str(ns),
            tokens=tokens,
            before=get_checkpoint_id(before) if before is not None else None,
            limit=None if only_id else limit,
            descending=True,
        )
        records = await self._store.find_records(query)
        remaining = limit
        for record in records:
            if remaining is not None and remaining <= 0:
                return
            if only_id and record.id.key != only_id:
                continue
            item = await self._tuple(await self._store.open(record))
            if wanted and not codec.matches(item.metadata, filter or {}):
                continue
            if remaining is not None:
                remaining -= 1
            yield item

    async def _alist_all(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        return [t async for t in self._list(config, filter=filter, before=before, limit=limit)]

    # -- writes to the store ----------------------------------------------------------

    async def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed, in one batch.

        Returns:
            The config of the stored checkpoint.

        Raises:
            SerializationError: a value cannot be serialized.
            RecordTooLargeError: a record is above the store's size cap.
            StoreUnavailableError: the backend failed (nothing or everything is stored).
        """
        conf = configurable(config)
        thread, ns = thread_of(conf), str(conf.get("checkpoint_ns", ""))
        parent = conf.get("checkpoint_id")
        body = dict(checkpoint)
        values: Mapping[str, Any] = checkpoint.get("channel_values") or {}
        body.pop("channel_values", None)
        states: dict[tuple[str, str, str], _ListState] = {}
        items = [
            self._blob_record(thread, ns, ch, version, values[ch], states)
            for ch, version in new_versions.items()
            if ch in values
        ]
        full_metadata = get_checkpoint_metadata(config, metadata)
        items.append(
            Write(
                self._rid(thread, ns, codec.CHECKPOINT, checkpoint["id"]),
                codec.encode_checkpoint(self.serde, body, full_metadata, parent),
                sort=checkpoint["id"],
                group=parent or "",
                index=codec.metadata_index(full_metadata),
            )
        )
        await self._store.write(items, if_absent=True)
        self._remember(states)
        self._note_head(thread, ns, checkpoint["id"], checkpoint["channel_versions"])
        return _config(thread, ns, checkpoint["id"])

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the writes of a task against a checkpoint, in one batch.

        Regular writes are insert-if-absent on (checkpoint, task, index); a batch of only
        special writes (error, interrupt, resume, scheduled) replaces what was there.

        Raises:
            SerializationError, RecordTooLargeError, StoreUnavailableError: as `aput`.
        """
        conf = configurable(config)
        thread, ns = thread_of(conf), str(conf.get("checkpoint_ns", ""))
        checkpoint_id = str(conf["checkpoint_id"])
        special_only = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        bodies: dict[str, bytes] = {}
        for position, (channel, value) in enumerate(writes):
            key = codec.write_key(checkpoint_id, task_id, WRITES_IDX_MAP.get(channel, position))
            if key in bodies and not special_only:
                continue
            type_tag, data = codec.dumps(self.serde, value, f"write to {channel!r}")
            bodies[key] = codec.encode_write(channel, task_path, type_tag, data)
        items = [
            Write(self._rid(thread, ns, codec.WRITE, key), body, checkpoint_id, checkpoint_id)
            for key, body in bodies.items()
        ]
        if items:
            await self._store.write(items, if_absent=not special_only)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The next channel version: a 32-digit counter and a random suffix.

        The suffix keeps versions written by two forks of one checkpoint apart.
        """
        if current is None:
            number = 0
        elif isinstance(current, (int, float)):
            number = int(current)
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"  # noqa: S311
