"""Reading the saver's records back: configs, checkpoint tuples, pending writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, writes_sort_key

from checkpointers import ConfigurationError, EncryptedStore, Entry, RecordId
from checkpointers.values import Prefetched, ValueStore

from . import _codec as codec
from ._codec import SerdeCodec


def configurable(config: RunnableConfig) -> dict[str, Any]:
    """The `configurable` section of `config`; ConfigurationError without one."""
    conf = config.get("configurable")
    if not isinstance(conf, dict):
        raise ConfigurationError("the config has no 'configurable' section")
    return conf


def thread_of(conf: Mapping[str, Any]) -> str:
    """The thread id of a `configurable` section; ConfigurationError when empty."""
    thread = conf.get("thread_id")
    if thread is None or str(thread) == "":
        raise ConfigurationError("the config needs a non-empty configurable.thread_id")
    return str(thread)


def address(conf: Mapping[str, Any]) -> tuple[str, str]:
    """(thread, namespace) of a `configurable` section; ConfigurationError without thread."""
    return thread_of(conf), str(conf.get("checkpoint_ns", ""))


def config_of(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    """The config that names a stored checkpoint."""
    return {
        "configurable": {
            "thread_id": thread,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class Checkpoints:
    """Reads checkpoints in the saver's record layout (see `_codec`)."""

    def __init__(self, store: EncryptedStore, codec: SerdeCodec, values: ValueStore) -> None:
        self.store = store
        self.codec = codec
        self.values = values

    def record_id(self, thread: str, ns: str, checkpoint_id: str) -> RecordId:
        """The id of a checkpoint record."""
        return self.store.record_id(thread, ns, codec.CHECKPOINT, checkpoint_id)

    def decode(self, entry: Entry) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        """(checkpoint without values, metadata, parent id) of a checkpoint record."""
        return codec.decode_checkpoint(self.codec, entry.data, entry.id.describe())

    async def writes(self, thread: str, ns: str, checkpoint_id: str) -> list[tuple[str, str, Any]]:
        """Pending writes of a checkpoint as (task id, channel, value), sorted."""
        query = self.store.query(kind=codec.WRITE, thread=thread, namespace=ns, group=checkpoint_id)
        rows = []
        for entry in await self.store.find(query):
            what = entry.id.describe()
            _, task_id, idx = codec.parse_write_key(entry.id.key)
            channel, task_path, type_tag, data = codec.decode_write(entry.data, what)
            value = self.codec.loads(type_tag, data, what)
            rows.append((writes_sort_key(task_path, task_id, idx), task_id, channel, value))
        rows.sort(key=lambda row: row[0])
        return [(task_id, channel, value) for _, task_id, channel, value in rows]

    async def tuple(
        self,
        entry: Entry,
        writes: list[tuple[str, str, Any]] | None = None,
        prefetched: Prefetched | None = None,
    ) -> CheckpointTuple:
        """The tuple of a checkpoint record: its values and writes, read concurrently
        (one `get_many` and one query), unless `writes` were read already, or
        `prefetched` (a head's values, read before the checkpoint was known) holds them."""
        rid = entry.id
        thread, ns = rid.thread, rid.namespace
        checkpoint, metadata, parent = self.decode(entry)
        versions = checkpoint["channel_versions"]
        if writes is None:
            values, writes = await asyncio.gather(
                self.values.load(thread, ns, versions, prefetched),
                self.writes(thread, ns, rid.key),
            )
        else:
            values = await self.values.load(thread, ns, versions, prefetched)
        checkpoint["channel_values"] = values
        return CheckpointTuple(
            config=config_of(thread, ns, rid.key),
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=metadata,  # type: ignore[arg-type]
            parent_config=config_of(thread, ns, parent) if parent else None,
            pending_writes=list(writes),
        )
