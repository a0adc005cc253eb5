"""Thread-level operations of the LangGraph saver: delete, copy, prune, runs, delta history.

`Maintenance` is one part of `checkpointers.langgraph.CheckpointSaver`, which documents
each operation; it works through the saver's other parts, handed to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import DeltaChannelHistory, PendingWrite, get_checkpoint_id

from checkpointers import ConfigurationError, Record
from checkpointers.values import BLOB, HeadCache, value_key

from . import _codec as codec
from ._checkpoints import Checkpoints, address, configurable, thread_of

_DELETE_BATCH = 500


class Maintenance:
    """Delete, copy and prune threads, delete runs, walk delta-channel history."""

    def __init__(self, checkpoints: Checkpoints, heads: HeadCache) -> None:
        self._checkpoints = checkpoints
        self._store = checkpoints.store
        self._values = checkpoints.values
        self._heads = heads

    def _forget(self, threads: Sequence[str]) -> None:
        self._values.forget(threads)
        self._heads.forget(threads)

    async def delete_thread(self, thread_id: str) -> None:
        """See `CheckpointSaver.adelete_thread`."""
        thread = thread_of({"thread_id": thread_id})
        self._forget([thread])
        await self._store.delete_thread(thread)

    async def _versions(self, record: Record) -> tuple[dict[str, Any], dict[str, Any]]:
        checkpoint, metadata, _ = self._checkpoints.decode(await self._store.open(record))
        return dict(checkpoint.get("channel_versions") or {}), metadata

    async def _thread_records(self, thread: str) -> dict[str, dict[str, list[Record]]]:
        """Records of a thread by namespace, then by kind."""
        out: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
        for record in await self._store.find_records(self._store.query(thread=thread)):
            if record.id.kind in codec.KINDS:
                out[record.id.namespace][record.id.kind].append(record)
        return out

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """See `CheckpointSaver.adelete_for_runs`."""
        doomed: dict[tuple[str, str], set[str]] = defaultdict(set)
        for run_id in dict.fromkeys(run_ids):
            tokens = await self._store.tokens({"run_id": codec.index_value(run_id)})
            query = self._store.query(kind=codec.CHECKPOINT, tokens=tokens)
            for record in await self._store.find_records(query):
                doomed[(record.id.thread, record.id.namespace)].add(record.id.key)
        threads = list(dict.fromkeys(thread for thread, _ in doomed))
        self._forget(threads)
        for thread in threads:
            for ns, kinds in (await self._thread_records(thread)).items():
                gone = doomed.get((thread, ns))
                if gone:
                    await self._drop(kinds, gone)

    async def _drop(self, kinds: Mapping[str, list[Record]], gone: set[str]) -> None:
        """Delete checkpoints `gone` of one namespace, their writes and orphaned values."""
        kept = [r for r in kinds.get(codec.CHECKPOINT, []) if r.id.key not in gone]
        versions = [(await self._versions(r))[0] for r in kept]
        ids = [r.id for r in kinds.get(codec.CHECKPOINT, []) if r.id.key in gone]
        ids += [r.id for r in kinds.get(codec.WRITE, []) if r.group in gone]
        ids += self._values.unreferenced(kinds.get(BLOB, []), versions)
        for batch in codec.chunks(ids, _DELETE_BATCH):
            await self._store.delete(batch)

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """See `CheckpointSaver.acopy_thread`."""
        source = thread_of({"thread_id": source_thread_id})
        target = thread_of({"thread_id": target_thread_id})
        self._forget([target])
        records = await self._store.find_records(self._store.query(thread=source))
        await self._store.copy([r for r in records if r.id.kind in codec.KINDS], thread=target)

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        """See `CheckpointSaver.aprune`."""
        if strategy not in ("keep_latest", "delete"):
            raise ConfigurationError(f"unknown prune strategy {strategy!r}")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.delete_thread(thread_id)
                continue
            thread = thread_of({"thread_id": thread_id})
            self._forget([thread])
            for kinds in (await self._thread_records(thread)).values():
                keep = await self._keep_latest(kinds)
                await self._drop(kinds, {r.id.key for r in kinds[codec.CHECKPOINT]} - keep)

    async def _keep_latest(self, kinds: Mapping[str, list[Record]]) -> set[str]:
        """The newest checkpoint, and its ancestors back to a stored value of each
        channel its metadata `counters_since_delta_snapshot` names."""
        checkpoints = {r.id.key: r for r in kinds.get(codec.CHECKPOINT, [])}
        if not checkpoints:
            return set()
        blob_keys = {r.id.key for r in kinds.get(BLOB, [])}
        latest = max(checkpoints.values(), key=lambda r: r.sort)
        keep = {latest.id.key}
        versions, metadata = await self._versions(latest)
        delta = metadata.get("counters_since_delta_snapshot") or {}
        needed = {
            ch for ch in delta if ch in versions and value_key(ch, versions[ch]) not in blob_keys
        }
        current = checkpoints.get(latest.group)
        while needed and current is not None and current.id.key not in keep:
            keep.add(current.id.key)
            versions, _ = await self._versions(current)
            needed = {
                ch
                for ch in needed
                if ch not in versions or value_key(ch, versions[ch]) not in blob_keys
            }
            current = checkpoints.get(current.group)
        return keep

    async def delta_history(
        self, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """See `CheckpointSaver.aget_delta_channel_history`."""
        if not channels:
            return {}
        thread, ns = address(configurable(config))
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            target = await self._store.get(self._checkpoints.record_id(thread, ns, checkpoint_id))
        else:
            target = await self._store.latest(
                self._store.query(kind=codec.CHECKPOINT, thread=thread, namespace=ns)
            )
        per_checkpoint: dict[str, list[list[PendingWrite]]] = {ch: [] for ch in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        seen: set[str] = set()
        parent = target.record.group if target is not None else ""
        while parent and remaining and parent not in seen:
            seen.add(parent)
            entry = await self._store.get(self._checkpoints.record_id(thread, ns, parent))
            if entry is None:
                break
            checkpoint, _, _ = self._checkpoints.decode(entry)
            writes = await self._checkpoints.writes(thread, ns, parent)
            for ch in remaining:
                per_checkpoint[ch].append([w for w in writes if w[1] == ch])
            versions = checkpoint.get("channel_versions") or {}
            wanted = {ch: versions[ch] for ch in remaining if ch in versions}
            for ch, value in (await self._values.load(thread, ns, wanted)).items():
                seeds[ch] = value
                remaining.discard(ch)
            parent = entry.record.group
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            history: DeltaChannelHistory = {
                "writes": [w for group in reversed(per_checkpoint[ch]) for w in group]
            }
            if ch in seeds:
                history["seed"] = seeds[ch]
            result[ch] = history
        return result
