"""The async implementation of the LangGraph saver over `EncryptedStore`.

`adapters.langgraph.CheckpointSaver` adds the lifecycle and the sync facade on top.
The record layout is described in `adapters._langgraph_codec`.
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

from adapters import _langgraph_codec as codec
from checkpointers import (
    ConfigurationError,
    EncryptedStore,
    Entry,
    IntegrityError,
    Record,
    RecordId,
)

#: A channel value stored as an appended tail is re-stored in full after this many links.
MAX_TAIL_CHAIN = 50
#: How many (thread, namespace, channel) list states the append-only cache remembers.
TAIL_CACHE_SIZE = 4096
MISSING = object()


@dataclass(frozen=True, slots=True)
class _ListState:
    """What this process last stored for a list channel: its key, chain depth, items."""

    key: str
    depth: int
    digests: tuple[bytes, ...]


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

    def _init_core(self, store: EncryptedStore, *, append_only: bool) -> None:
        self._store = store
        self._append_only = append_only
        self._list_cache = OrderedDict()

    def _rid(self, thread: str, ns: str, kind: str, key: str) -> RecordId:
        return self._store.record_id(thread, ns, kind, key)

    # -- channel values -------------------------------------------------------------

    async def _blob_record(
        self,
        thread: str,
        ns: str,
        channel: str,
        version: Any,
        value: Any,
        states: dict[tuple[str, str, str], _ListState],
    ) -> Record:
        serde = self.serde
        key = codec.blob_key(channel, version)
        what = f"channel {channel!r}"
        body: bytes | None = None
        group = ""
        if self._append_only and type(value) is list and isinstance(version, str):
            items = [codec.dumps(serde, item, what) for item in value]
            digests = tuple(codec.digest(t, d) for t, d in items)
            prev = self._list_cache.get((thread, ns, channel))
            depth = 0
            if (
                prev is not None
                and prev.key != key
                and 0 < len(prev.digests) <= len(digests)
                and prev.depth + 1 < MAX_TAIL_CHAIN
                and digests[: len(prev.digests)] == prev.digests
            ):
                tail_type, tail_data = codec.dumps(serde, value[len(prev.digests) :], what)
                body = codec.encode_tail(tail_type, tail_data, prev.key)
                group = prev.key
                depth = prev.depth + 1
            states[(thread, ns, channel)] = _ListState(key, depth, digests)
        if body is None:
            body = codec.encode_full(*codec.dumps(serde, value, what))
        return await self._store.seal(self._rid(thread, ns, codec.BLOB, key), body, group=group)

    def _remember(self, states: Mapping[tuple[str, str, str], _ListState]) -> None:
        for cache_key, state in states.items():
            self._list_cache[cache_key] = state
            self._list_cache.move_to_end(cache_key)
        while len(self._list_cache) > TAIL_CACHE_SIZE:
            self._list_cache.popitem(last=False)

    def _forget(self, threads: Iterable[str]) -> None:
        gone = set(threads)
        for cache_key in [k for k in self._list_cache if k[0] in gone]:
            del self._list_cache[cache_key]

    async def _load_value(self, thread: str, ns: str, key: str) -> Any:
        """The value of blob `key`, rebuilt from its tail chain; `MISSING` if absent."""
        pieces: list[Any] = []
        current: str | None = key
        while current is not None:
            rid = self._rid(thread, ns, codec.BLOB, current)
            entry = await self._store.get(rid)
            if entry is None:
                if not pieces:
                    return MISSING
                raise IntegrityError(f"{rid.describe()}: missing base of an appended value")
            if len(pieces) > MAX_TAIL_CHAIN:
                raise IntegrityError(f"{rid.describe()}: chain of appended values too long")
            type_tag, data, current = codec.decode_blob(entry.data, rid.describe())
            pieces.append(codec.loads(self.serde, type_tag, data, rid.describe()))
        value = pieces.pop()
        while pieces:
            value = [*value, *pieces.pop()]
        return value

    async def _channel_values(
        self, thread: str, ns: str, versions: Mapping[str, Any]
    ) -> dict[str, Any]:
        channels = list(versions)
        loaded = await asyncio.gather(
            *(self._load_value(thread, ns, codec.blob_key(ch, versions[ch])) for ch in channels)
        )
        return {ch: v for ch, v in zip(channels, loaded, strict=True) if v is not MISSING}

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

    async def _tuple(self, entry: Entry) -> CheckpointTuple:
        rid = entry.id
        checkpoint, metadata, parent = codec.decode_checkpoint(
            self.serde, entry.data, rid.describe()
        )
        values, writes = await asyncio.gather(
            self._channel_values(rid.thread, rid.namespace, checkpoint["channel_versions"]),
            self._writes_of(rid.thread, rid.namespace, rid.key),
        )
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
            entry = await self._store.get(self._rid(thread, ns, codec.CHECKPOINT, checkpoint_id))
        else:
            entry = await self._store.latest(
                self._store.query(kind=codec.CHECKPOINT, thread=thread, namespace=ns)
            )
        return None if entry is None else await self._tuple(entry)

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
        records = [
            await self._blob_record(thread, ns, ch, version, values[ch], states)
            for ch, version in new_versions.items()
            if ch in values
        ]
        full_metadata = get_checkpoint_metadata(config, metadata)
        records.append(
            await self._store.seal(
                self._rid(thread, ns, codec.CHECKPOINT, checkpoint["id"]),
                codec.encode_checkpoint(self.serde, body, full_metadata, parent),
                sort=checkpoint["id"],
                group=parent or "",
                index=codec.metadata_index(full_metadata),
            )
        )
        await self._store.put_records(records, if_absent=True)
        self._remember(states)
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
        records = [
            await self._store.seal(
                self._rid(thread, ns, codec.WRITE, key),
                body,
                sort=checkpoint_id,
                group=checkpoint_id,
            )
            for key, body in bodies.items()
        ]
        if records:
            await self._store.put_records(records, if_absent=not special_only)

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
