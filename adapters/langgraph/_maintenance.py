"""Maintenance of the LangGraph saver: delete, copy, prune, runs, delta-channel history.

A mixin over `SaverCore`; `checkpointers.langgraph.CheckpointSaver` exposes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import DeltaChannelHistory, PendingWrite, get_checkpoint_id

from checkpointers import ConfigurationError, Record, RecordId

from . import _codec as codec
from ._core import SaverCore, configurable, thread_of

_DELETE_BATCH = 500


class SaverMaintenance(SaverCore):
    """Thread-level operations, async only (see `CheckpointSaver`)."""

    async def _delete(self, ids: Sequence[RecordId]) -> None:
        for batch in codec.chunks(list(ids), _DELETE_BATCH):
            await self._store.delete(batch)

    async def _delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, value and write of a thread, all namespaces.

        Raises:
            ConfigurationError: an empty thread id.
            StoreUnavailableError: the backend failed.
        """
        thread = thread_of({"thread_id": thread_id})
        self._forget([thread])
        await self._store.delete_thread(thread)

    async def _unreferenced_blobs(
        self, blobs: Sequence[Record], kept_versions: Iterable[Mapping[str, Any]]
    ) -> list[RecordId]:
        """Blobs of one (thread, ns) that no kept checkpoint needs, bases included."""
        by_key = {r.id.key: r for r in blobs}
        live: set[str] = set()
        todo = [codec.blob_key(ch, v) for versions in kept_versions for ch, v in versions.items()]
        while todo:
            key = todo.pop()
            if key in live or key not in by_key:
                continue
            live.add(key)
            if by_key[key].group:
                todo.append(by_key[key].group)
        return [r.id for r in blobs if r.id.key not in live]

    async def _versions(self, record: Record) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = await self._store.open(record)
        checkpoint, metadata, _ = codec.decode_checkpoint(
            self.serde, entry.data, record.id.describe()
        )
        return dict(checkpoint.get("channel_versions") or {}), metadata

    async def _thread_records(self, thread: str) -> dict[str, dict[str, list[Record]]]:
        """Records of a thread by namespace, then by kind."""
        out: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
        for record in await self._store.find_records(self._store.query(thread=thread)):
            if record.id.kind in codec.KINDS:
                out[record.id.namespace][record.id.kind].append(record)
        return out

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata `run_id` is in `run_ids`, with their writes.

        Channel values no remaining checkpoint refers to are deleted too.

        Raises:
            IntegrityError, KeyUnavailableError: a remaining checkpoint cannot be read.
            StoreUnavailableError: the backend failed.
        """
        doomed: dict[tuple[str, str], set[str]] = defaultdict(set)
        for run_id in dict.fromkeys(run_ids):
            tokens = await self._store.tokens({"run_id": codec.index_value(run_id)})
            query = self._store.query(kind=codec.CHECKPOINT, tokens=tokens)
            for record in await self._store.find_records(query):
                doomed[(record.id.thread, record.id.namespace)].add(record.id.key)
        self._forget(thread for thread, _ in doomed)
        for thread in {thread for thread, _ in doomed}:
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
        ids += await self._unreferenced_blobs(kinds.get(codec.BLOB, []), versions)
        await self._delete(ids)

    async def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of a thread to another thread.

        Each body is decrypted and encrypted again under the target's record identity.

        Raises:
            IntegrityError, KeyUnavailableError: a source record cannot be read.
            StoreUnavailableError: the backend failed (the copy is all or nothing).
        """
        source = thread_of({"thread_id": source_thread_id})
        target = thread_of({"thread_id": target_thread_id})
        self._forget([target])
        records = await self._store.find_records(self._store.query(thread=source))
        await self._store.copy([r for r in records if r.id.kind in codec.KINDS], thread=target)

    async def _prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        """Prune threads: `"keep_latest"` keeps the newest checkpoint per namespace.

        The newest checkpoint keeps its pending writes and the values it refers to. When
        it carries `DeltaChannel` state (metadata `counters_since_delta_snapshot`), its
        ancestors back to a stored value of each delta channel are kept as well, with
        their writes, so the channel can still be rebuilt. `"delete"` deletes the threads.

        Raises:
            ConfigurationError: an unknown strategy.
            IntegrityError, KeyUnavailableError: a kept checkpoint cannot be read.
            StoreUnavailableError: the backend failed.
        """
        if strategy not in ("keep_latest", "delete"):
            raise ConfigurationError(f"unknown prune strategy {strategy!r}")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self._delete_thread(thread_id)
                continue
            thread = thread_of({"thread_id": thread_id})
            self._forget([thread])
            for kinds in (await self._thread_records(thread)).values():
                keep = await self._keep_latest(kinds)
                await self._drop(kinds, {r.id.key for r in kinds[codec.CHECKPOINT]} - keep)

    async def _keep_latest(self, kinds: Mapping[str, list[Record]]) -> set[str]:
        checkpoints = {r.id.key: r for r in kinds.get(codec.CHECKPOINT, [])}
        if not checkpoints:
            return set()
        blob_keys = {r.id.key for r in kinds.get(codec.BLOB, [])}
        latest = max(checkpoints.values(), key=lambda r: r.sort)
        keep = {latest.id.key}
        versions, metadata = await self._versions(latest)
        delta = metadata.get("counters_since_delta_snapshot") or {}
        needed = {
            ch
            for ch in delta
            if ch in versions and codec.blob_key(ch, versions[ch]) not in blob_keys
        }
        current = checkpoints.get(latest.group)
        while needed and current is not None and current.id.key not in keep:
            keep.add(current.id.key)
            versions, _ = await self._versions(current)
            needed = {
                ch
                for ch in needed
                if ch not in versions or codec.blob_key(ch, versions[ch]) not in blob_keys
            }
            current = checkpoints.get(current.group)
        return keep

    async def _delta_history(
        self, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Walk the parent chain once, reading only checkpoint bodies, writes and seeds.

        Same result as the base implementation without loading every channel value of
        every ancestor.

        Raises:
            IntegrityError, KeyUnavailableError, SerializationError,
            StoreUnavailableError: as `aget_tuple`.
        """
        if not channels:
            return {}
        conf = configurable(config)
        thread, ns = thread_of(conf), str(conf.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            target = await self._store.get(self._rid(thread, ns, codec.CHECKPOINT, checkpoint_id))
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
            entry = await self._store.get(self._rid(thread, ns, codec.CHECKPOINT, parent))
            if entry is None:
                break
            checkpoint, _, _ = codec.decode_checkpoint(self.serde, entry.data, entry.id.describe())
            writes = await self._writes_of(thread, ns, parent)
            for ch in remaining:
                per_checkpoint[ch].append([w for w in writes if w[1] == ch])
            versions = checkpoint.get("channel_versions") or {}
            keys = {ch: codec.blob_key(ch, versions[ch]) for ch in remaining if ch in versions}
            for ch, value in (await self._load_values(thread, ns, keys)).items():
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
