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

from collections.abc import (
    AsyncIterator,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from typing_extensions import Self

from checkpointers import EncryptedStore, KeyRing

from ._maintenance import SaverMaintenance

__all__ = ["CheckpointSaver"]

T = TypeVar("T")


class CheckpointSaver(SaverMaintenance):
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
        self._init_core(store, append_only=append_only)
        self._owns_store = False

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
        saver._owns_store = True
        return saver

    # -- lifecycle: the store owns the event loop; sync calls go through it -------------

    async def __aenter__(self) -> Self:
        if self._owns_store:
            await self._store.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        if self._owns_store:
            self._store.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the store if this saver opened it (`from_url`). Idempotent."""
        if self._owns_store:
            await self._store.aclose()

    def close(self) -> None:
        """Close the store if this saver opened it (`from_url`). Idempotent.

        Raises:
            ConfigurationError: called from the store's own event loop (use `aclose`).
        """
        if self._owns_store:
            self._store.close()

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
        return await self._get_tuple(config)

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
        async for item in self._list(config, filter=filter, before=before, limit=limit):
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
        return await self._put(config, checkpoint, metadata, new_versions)

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
        await self._put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, value and write of a thread, all namespaces.

        Raises:
            ConfigurationError: an empty thread id.
            StoreUnavailableError: the backend failed.
        """
        await self._delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete checkpoints whose metadata `run_id` is in `run_ids`, with their writes.

        Runs are found through the blind-index token of `run_id`; channel values that no
        remaining checkpoint refers to are deleted too.

        Raises:
            IntegrityError, KeyUnavailableError: a remaining checkpoint cannot be read.
            StoreUnavailableError: the backend failed.
        """
        await self._delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of a thread to another thread.

        Each body is decrypted and encrypted again under the target's record identity
        (ciphertext is bound to its thread). The source is unchanged.

        Raises:
            ConfigurationError: an empty thread id.
            IntegrityError, KeyUnavailableError: a source record cannot be read.
            StoreUnavailableError: the backend failed (the copy is all or nothing).
        """
        await self._copy_thread(source_thread_id, target_thread_id)

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
        await self._prune(thread_ids, strategy)

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
        return await self._delta_history(config, channels)

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
        return iter(self._store.call(self._alist_all, config, filter, before, limit))

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

    def __repr__(self) -> str:
        return f"CheckpointSaver(store={self._store!r})"
