"""LangGraph checkpointer over encrypted storage: `CheckpointSaver`.

Every checkpoint, channel value (primitives included), pending write and metadata entry
is serialized by LangGraph's serializer, then compressed, encrypted and bound to its
record identity by the `checkpointers` core. Only routing ids (thread, namespace,
checkpoint, task, channel names and versions) stay in clear; `list(filter=...)` matches
metadata through keyed blind-index tokens.

Example:
    ```python
    from checkpointers.langgraph import CheckpointSaver

    async with CheckpointSaver.from_url("sqlite:///checkpoints.db") as saver:
        graph = builder.compile(checkpointer=saver)
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "t1"}})

    with CheckpointSaver.from_url("sqlite:///checkpoints.db") as saver:
        graph = builder.compile(checkpointer=saver)
        graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})
    ```
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from checkpointers import MissingDependencyError

try:  # the `langgraph` extra: one clear error instead of a traceback from deep inside
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:
    raise MissingDependencyError(exc.name or "langgraph", "langgraph") from None

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from checkpointers import EncryptedStore, KeyRing, Write
from checkpointers.lifecycle import StoreOwner
from checkpointers.values import HeadCache, ListCache, ValueStore

from . import _codec as codec
from ._checkpoints import Checkpoints, address, config_of, configurable
from ._codec import SerdeCodec
from ._maintenance import Maintenance

__all__ = ["CheckpointSaver"]

T = TypeVar("T")


class CheckpointSaver(StoreOwner, BaseCheckpointSaver[str]):
    """A LangGraph `BaseCheckpointSaver` that encrypts everything it stores.

    Build it with `from_url(...)` (it then owns the store and closes it) and use it as
    `async with` or `with`; or give it an opened `EncryptedStore`, which it borrows and
    never closes. The sync methods run the async ones on the store's event loop (see
    `EncryptedStore.call`); the async ones can be awaited from any loop.

    Channel values are stored once per (thread, namespace, channel, version). A list
    channel that grows by appending (a message history) is stored as the appended items
    plus a reference to the previous version, with a full copy every
    `MAX_TAIL_CHAIN` versions, so storage grows linearly with the conversation.

    Args:
        store: an opened `EncryptedStore` (borrowed).
        serde: LangGraph serializer (default `JsonPlusSerializer`); its bytes are
            encrypted. `with_allowlist(...)` keeps working.
        append_only: store appended list tails instead of full copies (default True).
    """

    def __init__(
        self,
        store: EncryptedStore,
        *,
        serde: SerializerProtocol | None = None,
        append_only: bool = True,
    ) -> None:
        super().__init__(serde=serde)
        self._store = store
        self._append_only = append_only
        self._list_cache = ListCache()
        self._heads = HeadCache()
        self._use(self.serde)

    def _use(self, serde: SerializerProtocol) -> None:
        """Build the parts that serialize through `serde` (they share the caches)."""
        self._codec = SerdeCodec(serde)
        self._values = ValueStore(
            self._store, self._codec, lists=self._list_cache, append_only=self._append_only
        )
        self._checkpoints = Checkpoints(self._store, self._codec, self._values)
        self._maintenance = Maintenance(self._checkpoints, self._heads)

    @property
    def _list_cache_bytes(self) -> int:
        """Item bytes in the list cache (for tests)."""
        return self._list_cache.nbytes

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> CheckpointSaver:
        """A shallow clone whose serializer also allows `extra_allowlist` (see the base
        class), over the same store and caches; this saver if nothing changes."""
        clone = super().with_allowlist(extra_allowlist)
        assert isinstance(clone, CheckpointSaver)
        if clone is not self:
            clone._use(clone.serde)
        return clone

    @classmethod
    def from_url(
        cls,
        url: str | Sequence[str],
        keys: KeyRing | None = None,
        *,
        serde: SerializerProtocol | None = None,
        append_only: bool = True,
        **options: Any,
    ) -> CheckpointSaver:
        """A saver over the store(s) at `url`, owning them: use it as `async with` or `with`.

        Args:
            url: `memory://`, `sqlite:///path.db`, ... or a list of URLs (tiers).
            keys: the key ring; None reads `CHECKPOINTERS_KEY` or `CHECKPOINTERS_KEY_FILE`.
            serde: LangGraph serializer (default `JsonPlusSerializer`).
            append_only: see the class docstring.
            **options: `tenant`, `ttl`, `migrate` and store options, as
                `EncryptedStore.from_url`.

        Raises:
            ConfigurationError: malformed URL, unknown option, no key configured.
            MissingDependencyError: the extra for a URL scheme is not installed.
        """
        store = EncryptedStore.from_url(url, keys=keys, **options)
        saver = cls(store, serde=serde, append_only=append_only)
        saver._own(store)
        return saver

    @classmethod
    def from_conn_string(
        cls, conn_string: str, keys: KeyRing | None = None, **options: Any
    ) -> CheckpointSaver:
        """`from_url` under the name LangGraph's `PostgresSaver` and `SqliteSaver` use.

        Use it as upstream's: `with CheckpointSaver.from_conn_string(...) as saver` or
        `async with`. A string without a scheme is a SQLite file path, as for
        `SqliteSaver` (`":memory:"` is `memory://`); anything else is a store URL.

        Raises:
            ConfigurationError, MissingDependencyError: as `from_url`.
        """
        return cls.from_url(_conn_string_url(conn_string), keys, **options)

    def setup(self) -> None:
        """Create or migrate the store's schema now, as `PostgresSaver.setup()` does.

        Optional: the store migrates on first use (unless opened with `migrate=False`).

        Raises:
            ConfigurationError: called from the store's own event loop (use `asetup`).
            StoreUnavailableError: the store cannot be reached.
        """
        self._store.call(self._store.setup)

    async def asetup(self) -> None:
        """Async `setup` (`await checkpointer.setup()` of `AsyncPostgresSaver`).

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        await self._store.setup()

    # -- async API ----------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch a checkpoint: the one named by `checkpoint_id`, else the newest.

        Args:
            config: `configurable.thread_id`, optional `checkpoint_ns` and `checkpoint_id`.

        Returns:
            The checkpoint with its values, metadata, parent config and pending writes
            (in `writes_sort_key` order), or None.

        Raises:
            ConfigurationError: the config has no thread id.
            IntegrityError: a record was tampered with, moved, or is not encrypted.
            KeyUnavailableError: a record's key is not in the key ring.
            SerializationError: a stored value cannot be deserialized.
            StoreUnavailableError: the backend failed.
        """
        conf = configurable(config)
        thread, ns = address(conf)
        checkpoint_id = get_checkpoint_id(config)
        checkpoints = self._checkpoints
        if checkpoint_id:
            # The checkpoint and its writes at once, then its values: two round trips.
            entry, writes = await asyncio.gather(
                self._store.get(checkpoints.record_id(thread, ns, checkpoint_id)),
                checkpoints.writes(thread, ns, checkpoint_id),
            )
            return None if entry is None else await checkpoints.tuple(entry, writes)
        latest = self._store.latest(
            self._store.query(kind=codec.CHECKPOINT, thread=thread, namespace=ns)
        )
        head = self._heads.get(thread, ns)
        if head is None:
            found, writes, prefetched = await latest, None, None
        else:
            # Most often the newest checkpoint is the one this process last put or read:
            # read it, its writes and its values at once (one round trip), then check.
            found, writes, prefetched = await asyncio.gather(
                latest,
                checkpoints.writes(thread, ns, head.snapshot),
                self._values.prefetch(thread, ns, head),
            )
            if found is None or found.id.key != head.snapshot:
                writes, prefetched = None, None
        if found is None:
            return None
        item = await checkpoints.tuple(found, writes, prefetched)
        self._heads.note(thread, ns, found.id.key, item.checkpoint["channel_versions"])
        return item

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """List checkpoints, newest first.

        Args:
            config: None for every thread; without `checkpoint_ns`, every namespace.
            filter: metadata keys and values to match exactly (blind-index tokens).
            before: only checkpoints with an id strictly lower than this config's.
            limit: at most this many.

        Raises:
            IntegrityError, KeyUnavailableError, SerializationError,
            StoreUnavailableError: as `aget_tuple`.
        """
        conf = configurable(config) if config is not None else {}
        thread = address(conf)[0] if config is not None else None
        ns = conf.get("checkpoint_ns")
        only_id = get_checkpoint_id(config) if config is not None else None
        wanted = {k: codec.index_value(v) for k, v in (filter or {}).items()}
        if not all(codec.is_indexable(v) for v in wanted.values()):
            return  # such a value was never indexed: nothing can match
        query = self._store.query(
            kind=codec.CHECKPOINT,
            thread=thread,
            namespace=None if ns is None else str(ns),
            tokens=await self._store.tokens(wanted) if wanted else frozenset(),
            before=get_checkpoint_id(before) if before is not None else None,
            limit=None if only_id else limit,
            descending=True,
        )
        remaining = limit
        for record in await self._store.find_records(query):
            if remaining is not None and remaining <= 0:
                return
            if only_id and record.id.key != only_id:
                continue
            item = await self._checkpoints.tuple(await self._store.open(record))
            if wanted and not codec.matches(item.metadata, filter or {}):
                continue
            if remaining is not None:
                remaining -= 1
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and its changed channel values atomically, in one batch.

        Records are insert-if-absent: a value stored for a (channel, version) is never
        replaced, and putting an already stored checkpoint id again keeps the first.

        Returns:
            The config of the stored checkpoint.

        Raises:
            ConfigurationError: the config has no thread id.
            SerializationError: a value cannot be serialized.
            RecordTooLargeError: a record is above the store's size cap.
            StoreUnavailableError: the backend failed (nothing or everything is stored).
        """
        conf = configurable(config)
        thread, ns = address(conf)
        parent = conf.get("checkpoint_id")
        body = dict(checkpoint)
        values: Mapping[str, Any] = checkpoint.get("channel_values") or {}
        body.pop("channel_values", None)
        full_metadata = get_checkpoint_metadata(config, metadata)
        record = Write(
            self._checkpoints.record_id(thread, ns, checkpoint["id"]),
            codec.encode_checkpoint(self._codec, body, full_metadata, parent),
            sort=checkpoint["id"],
            group=parent or "",
            index=codec.metadata_index(full_metadata),
        )
        await self._values.put(thread, ns, new_versions, values, with_records=[record])
        self._heads.note(thread, ns, checkpoint["id"], checkpoint["channel_versions"])
        return config_of(thread, ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against a checkpoint, in one batch.

        Regular writes are insert-if-absent per (checkpoint, task, index); a batch of
        special writes only (error, interrupt, resume, scheduled) replaces them.

        Raises:
            ConfigurationError, SerializationError, RecordTooLargeError,
            StoreUnavailableError: as `aput`.
        """
        conf = configurable(config)
        thread, ns = address(conf)
        checkpoint_id = str(conf["checkpoint_id"])
        special_only = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        bodies: dict[str, bytes] = {}
        for position, (channel, value) in enumerate(writes):
            key = codec.write_key(checkpoint_id, task_id, WRITES_IDX_MAP.get(channel, position))
            if key in bodies and not special_only:
                continue
            type_tag, data = self._codec.dumps(value, f"write to {channel!r}")
            bodies[key] = codec.encode_write(channel, task_path, type_tag, data)
        items = [
            Write(
                self._store.record_id(thread, ns, codec.WRITE, key),
                body,
                checkpoint_id,
                checkpoint_id,
            )
            for key, body in bodies.items()
        ]
        if items:
            await self._store.write(items, if_absent=not special_only)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, value and write of a thread, all namespaces.

        Raises:
            ConfigurationError: an empty thread id.
            StoreUnavailableError: the backend failed.
        """
        await self._maintenance.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete checkpoints whose metadata `run_id` is in `run_ids`, with their writes.

        Runs are found through the blind-index token of `run_id`; channel values that no
        remaining checkpoint refers to are deleted too.

        Raises:
            IntegrityError, KeyUnavailableError: a remaining checkpoint cannot be read.
            StoreUnavailableError: the backend failed.
        """
        await self._maintenance.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of a thread to another thread.

        Each body is decrypted and encrypted again under the target's record identity
        (ciphertext is bound to its thread). The source is unchanged.

        Raises:
            ConfigurationError: an empty thread id.
            IntegrityError, KeyUnavailableError: a source record cannot be read.
            StoreUnavailableError: the backend failed (the copy is all or nothing).
        """
        await self._maintenance.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: `"keep_latest"` keeps the newest checkpoint per namespace.

        The kept checkpoint keeps its pending writes and the values it refers to. When it
        carries `DeltaChannel` state, its ancestors back to a stored value of each delta
        channel are kept too, with their writes. `"delete"` deletes the threads.

        Raises:
            ConfigurationError: an unknown strategy.
            IntegrityError, KeyUnavailableError: a kept checkpoint cannot be read.
            StoreUnavailableError: the backend failed.
        """
        await self._maintenance.prune(thread_ids, strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Per-channel writes and seed along the parent chain (see the base class).

        Walks the chain once, reading checkpoint bodies, their writes and only the
        requested channels' values, instead of whole checkpoint tuples.

        Raises:
            IntegrityError, KeyUnavailableError, SerializationError,
            StoreUnavailableError: as `aget_tuple`.
        """
        return await self._maintenance.delta_history(config, channels)

    # -- sync API: one line each, on the store's event loop ---------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Sync `aget_tuple`. Raises ConfigurationError on the saver's own event loop."""
        return self._store.call(self.aget_tuple, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Sync `alist`. Raises ConfigurationError on the saver's own event loop."""
        return iter(
            self._store.call(
                _collect, self.alist(config, filter=filter, before=before, limit=limit)
            )
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Sync `aput`. Raises ConfigurationError on the saver's own event loop."""
        return self._store.call(self.aput, config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Sync `aput_writes`. Raises ConfigurationError on the saver's own event loop."""
        self._store.call(self.aput_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        """Sync `adelete_thread`. Raises ConfigurationError on the saver's own event loop."""
        self._store.call(self.adelete_thread, thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Sync `adelete_for_runs`. Raises ConfigurationError on the saver's own loop."""
        self._store.call(self.adelete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Sync `acopy_thread`. Raises ConfigurationError on the saver's own event loop."""
        self._store.call(self.acopy_thread, source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Sync `aprune`. Raises ConfigurationError on the saver's own event loop."""
        self._store.call(self.aprune, thread_ids, strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Sync `aget_delta_channel_history`. Raises ConfigurationError on the own loop."""
        return self._store.call(self.aget_delta_channel_history, config=config, channels=channels)

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

    def __repr__(self) -> str:
        return f"CheckpointSaver(store={self._store!r})"


async def _collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


def _conn_string_url(conn_string: str) -> str:
    """A LangGraph connection string as a store URL: a bare path is a SQLite file."""
    if "://" in conn_string:
        return conn_string
    if conn_string == ":memory:":
        return "memory://"
    return f"sqlite:///{quote(conn_string)}"
