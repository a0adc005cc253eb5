"""The LangGraph saver's storage layout: append-only values, prune, runs, delta channels."""

from __future__ import annotations

import operator
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from checkpointers import (
    EncryptedStore,
    MemoryStore,
    Record,
    RecordId,
    RecordTooLargeError,
    SerializationError,
)
from checkpointers.langgraph import CheckpointSaver
from checkpointers.testing import deterministic_key_ring
from checkpointers.values import MAX_TAIL_CHAIN
from checkpointers.values import _lists as _langgraph_core


@pytest.fixture
async def store() -> AsyncIterator[EncryptedStore]:
    """An opened memory-backed EncryptedStore (its raw records are easy to inspect)."""
    async with EncryptedStore(MemoryStore(), deterministic_key_ring(), owns_store=True) as enc:
        yield enc


def thread_config(thread_id: str | None = None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id or str(uuid.uuid4())}}


async def blob_bytes(store: EncryptedStore, thread: str) -> tuple[int, int]:
    """(total body bytes, number of full copies) of a thread's channel values."""
    blobs = await store.find_records(store.query(kind="blob", thread=thread))
    return sum(len(r.body) for r in blobs), sum(1 for r in blobs if not r.group)


class Chat(TypedDict, total=False):
    messages: Annotated[list[str], operator.add]


def chat_graph() -> StateGraph[Chat]:
    def reply(state: Chat) -> Chat:
        return {"messages": [f"ack {len(state['messages'])}"]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


def _concat(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(item for write in writes for item in write)]


class DeltaState(TypedDict, total=False):
    items: Annotated[list[str], DeltaChannel(_concat, snapshot_frequency=4)]


def delta_graph() -> StateGraph[DeltaState]:
    def add(state: DeltaState) -> DeltaState:
        return {"items": [f"n{len(state.get('items', []))}"]}

    builder = StateGraph(DeltaState)
    builder.add_node("add", add)
    builder.add_edge(START, "add")
    builder.add_edge("add", END)
    return builder


# -- append-only channel values ---------------------------------------------------------


async def test_growing_list_is_stored_as_tails(store: EncryptedStore) -> None:
    """A growing message list costs linear, not quadratic, storage and reads back whole."""
    turns = 60
    sizes = {}
    for append_only in (True, False):
        async with CheckpointSaver(store, append_only=append_only) as saver:
            graph = chat_graph().compile(checkpointer=saver)
            config = thread_config()
            expected: list[str] = []
            for turn in range(turns):
                message = os.urandom(1024).hex()  # 2 KiB that does not compress
                result = await graph.ainvoke({"messages": [message]}, config)
                expected += [message, f"ack {2 * turn + 1}"]
                assert result["messages"] == expected
            sizes[append_only] = await blob_bytes(store, config["configurable"]["thread_id"])
        # A fresh saver (cold cache) rebuilds every version from the chains.
        async with CheckpointSaver(store) as cold:
            history = [t async for t in cold.alist(config)]
            assert history[0].checkpoint["channel_values"]["messages"] == expected
            lengths = [len(t.checkpoint["channel_values"].get("messages", [])) for t in history]
            assert lengths == sorted(lengths, reverse=True)
    tails_bytes, tails_full = sizes[True]
    copies_bytes, _ = sizes[False]
    assert tails_bytes * 8 < copies_bytes
    assert tails_full >= (2 * turns) // MAX_TAIL_CHAIN  # the chain is cut regularly


async def test_list_changed_in_place_is_stored_in_full(store: EncryptedStore) -> None:
    """A list whose existing items changed is not mistaken for an extension."""
    async with CheckpointSaver(store) as saver:
        config = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
        values = [["a", "b"], ["a", "B", "c"], ["a", "B", "c", "d"]]
        version: str | None = None
        stored = []
        for value in values:
            version = saver.get_next_version(version, None)
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"ch": value}
            checkpoint["channel_versions"] = {"ch": version}
            config = await saver.aput(config, checkpoint, {"step": len(stored)}, {"ch": version})
            stored.append(config)
        for config, value in zip(stored, values, strict=True):
            got = await saver.aget_tuple(config)
            assert got is not None and got.checkpoint["channel_values"]["ch"] == value
        _, full = await blob_bytes(store, config["configurable"]["thread_id"])
        assert full == 2


class CountingStore(MemoryStore):
    """A memory store that records the blob identities each read asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[RecordId]] = []

    async def get(self, record_id: RecordId) -> Record | None:
        self.reads.append([record_id])
        return await super().get(record_id)

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        self.reads.append(list(record_ids))
        return await super().get_many(record_ids)

    def blob_reads(self) -> list[list[str]]:
        return [[r.key for r in batch if r.kind == "blob"] for batch in self.reads]


async def _chat(saver: CheckpointSaver, thread: str, turns: int, start: int = 0) -> list[str]:
    graph = chat_graph().compile(checkpointer=saver)
    result: dict[str, Any] = {}
    for turn in range(start, start + turns):
        result = await graph.ainvoke({"messages": [f"m{turn}"]}, thread_config(thread))
    return list(result["messages"])


async def test_live_conversation_reads_each_value_in_one_call() -> None:
    """get_tuple of a live conversation reads every channel value in one get_many, never
    walking the appended chain again."""
    raw = CountingStore()
    async with (
        EncryptedStore(raw, deterministic_key_ring()) as enc,
        CheckpointSaver(enc) as saver,
    ):
        expected = await _chat(saver, "t", 20)
        raw.reads.clear()
        got = await saver.aget_tuple(thread_config("t"))
        assert got is not None and got.checkpoint["channel_values"]["messages"] == expected
        (batch,) = [batch for batch in raw.blob_reads() if batch]
        assert _blob_key(got, "messages") in batch


def _blob_key(item: Any, channel: str) -> str:
    version = item.checkpoint["channel_versions"][channel]
    return f'["{channel}","{version}"]'


async def test_cache_follows_writes_of_another_process() -> None:
    """A saver whose cached value is older reads only the newer tails; a fresh saver and
    the stale one agree with what was stored."""
    raw = CountingStore()
    async with EncryptedStore(raw, deterministic_key_ring()) as enc:
        async with CheckpointSaver(enc) as first, CheckpointSaver(enc) as second:
            await _chat(first, "t", 5)
            expected = await _chat(second, "t", 3, start=5)  # first's cache is now stale
            raw.reads.clear()
            got = await first.aget_tuple(thread_config("t"))
            assert got is not None and got.checkpoint["channel_values"]["messages"] == expected
            levels = [batch for batch in raw.blob_reads() if batch]
            assert 1 < len(levels) <= 7  # the tails `second` wrote, not the whole chain
            # `first` goes on from there, appending to what `second` stored.
            expected = await _chat(first, "t", 2, start=8)
        async with CheckpointSaver(enc) as cold:
            got = await cold.aget_tuple(thread_config("t"))
            assert got is not None and got.checkpoint["channel_values"]["messages"] == expected


async def test_returned_values_are_fresh_objects(store: EncryptedStore) -> None:
    """Changing a list get_tuple returned never changes what the next read returns."""
    async with CheckpointSaver(store) as saver:
        expected = await _chat(saver, "t", 4)
        got = await saver.aget_tuple(thread_config("t"))
        assert got is not None
        got.checkpoint["channel_values"]["messages"].append("intruder")
        got.checkpoint["channel_values"]["messages"][0] = "changed"
        again = await saver.aget_tuple(thread_config("t"))
        assert again is not None and again.checkpoint["channel_values"]["messages"] == expected


async def test_list_cache_is_bounded_by_bytes(
    store: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache of list values evicts the least recently used past its byte budget."""
    monkeypatch.setattr(_langgraph_core, "TAIL_CACHE_BYTES", 300)
    async with CheckpointSaver(store) as saver:
        for thread in range(12):
            await _chat(saver, f"t{thread}", 3)
        cache = saver._list_cache
        assert saver._list_cache_bytes == sum(state.size for state in cache.values())
        assert 0 < saver._list_cache_bytes <= 300
        assert ("t11", "", "messages") in cache and ("t0", "", "messages") not in cache
        got = await saver.aget_tuple(thread_config("t0"))  # evicted: read from the store
        assert got is not None and len(got.checkpoint["channel_values"]["messages"]) == 6


async def test_deleted_thread_is_not_served_from_the_cache(store: EncryptedStore) -> None:
    """After delete_thread, a thread of the same id starts empty."""
    async with CheckpointSaver(store) as saver:
        await _chat(saver, "t", 3)
        await saver.adelete_thread("t")
        assert saver._list_cache_bytes == 0 and not saver._list_cache
        assert await saver.aget_tuple(thread_config("t")) is None
        assert await _chat(saver, "t", 1) == ["m0", "ack 1"]


# -- maintenance ----------------------------------------------------------------------


async def test_prune_keeps_pending_interrupt(store: EncryptedStore) -> None:
    """keep_latest on a paused thread keeps what resuming it needs."""

    class State(TypedDict, total=False):
        log: Annotated[list[str], operator.add]

    def ask(state: State) -> State:
        return {"log": [f"ask:{interrupt('?')}"]}

    builder = StateGraph(State)
    builder.add_node("first", lambda state: {"log": ["first"]})
    builder.add_node("ask", ask)
    builder.add_edge(START, "first")
    builder.add_edge("first", "ask")
    builder.add_edge("ask", END)
    async with CheckpointSaver(store) as saver:
        graph = builder.compile(checkpointer=saver)
        config = thread_config()
        await graph.ainvoke({"log": []}, config)
        await saver.aprune([config["configurable"]["thread_id"]])
        assert len([t async for t in saver.alist(config)]) == 1
        done = await graph.ainvoke(Command(resume="yes"), config)
        assert done["log"] == ["first", "ask:yes"]


async def test_prune_keeps_delta_channel_history(store: EncryptedStore) -> None:
    """keep_latest keeps the ancestors a DeltaChannel is rebuilt from."""
    async with CheckpointSaver(store) as saver:
        graph = delta_graph().compile(checkpointer=saver)
        config = thread_config()
        for _ in range(5):  # the newest checkpoint is not a snapshot
            await graph.ainvoke({"items": []}, config)
        latest = await saver.aget_tuple(config)
        assert latest is not None and "items" not in latest.checkpoint["channel_values"]
        before = (await graph.aget_state(config)).values["items"]
        total = len([t async for t in saver.alist(config)])
        await saver.aprune([config["configurable"]["thread_id"]])
        kept = len([t async for t in saver.alist(config)])
        assert 1 < kept < total
        assert (await graph.aget_state(config)).values["items"] == before
        await graph.ainvoke({"items": []}, config)
        assert (await graph.aget_state(config)).values["items"] == [*before, f"n{len(before)}"]


async def test_delta_history_matches_the_base_walk(store: EncryptedStore) -> None:
    """The direct delta-history walk returns what the base class's generic walk returns."""
    async with CheckpointSaver(store) as saver:
        graph = delta_graph().compile(checkpointer=saver)
        config = thread_config()
        for _ in range(5):
            await graph.ainvoke({"items": []}, config)
        async for item in saver.alist(config):
            ours = await saver.aget_delta_channel_history(
                config=item.config, channels=["items", "absent"]
            )
            generic = await BaseCheckpointSaver.aget_delta_channel_history(
                saver, config=item.config, channels=["items", "absent"]
            )
            assert ours == generic


async def test_delete_for_runs_keeps_values_of_other_runs(store: EncryptedStore) -> None:
    """Deleting a run leaves later runs' checkpoints readable, values included."""
    async with CheckpointSaver(store) as saver:
        graph = chat_graph().compile(checkpointer=saver)
        config = thread_config()
        first_run, last_run = str(uuid.uuid4()), str(uuid.uuid4())
        await graph.ainvoke({"messages": ["one"]}, {**config, "metadata": {"run_id": first_run}})
        await graph.ainvoke({"messages": ["two"]}, {**config, "metadata": {"run_id": last_run}})
        runs = [t.metadata["run_id"] async for t in saver.alist(config)]
        assert runs == [last_run] * 3 + [first_run] * 3
        await saver.adelete_for_runs([first_run])
        left = [t async for t in saver.alist(config)]
        assert {t.metadata["run_id"] for t in left} == {last_run}
        latest = await saver.aget_tuple(config)
        assert latest is not None
        assert latest.checkpoint["channel_values"]["messages"] == ["one", "ack 1", "two", "ack 3"]


# -- serializer -----------------------------------------------------------------------


@dataclass
class Point:
    x: int
    y: int


async def test_with_allowlist_keeps_the_saver(store: EncryptedStore) -> None:
    """with_allowlist returns a CheckpointSaver clone whose serializer allows the new type."""
    strict = CheckpointSaver(store, serde=JsonPlusSerializer(allowed_msgpack_modules=None))
    allowed = strict.with_allowlist([(Point.__module__, Point.__name__)])
    assert isinstance(allowed, CheckpointSaver) and allowed is not strict
    config = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"p": Point(1, 2)}
    checkpoint["channel_versions"] = {"p": strict.get_next_version(None, None)}
    stored = await allowed.aput(config, checkpoint, {}, checkpoint["channel_versions"])
    got = await allowed.aget_tuple(stored)
    assert got is not None and got.checkpoint["channel_values"]["p"] == Point(1, 2)
    refused = await strict.aget_tuple(stored)
    assert refused is not None and refused.checkpoint["channel_values"]["p"] != Point(1, 2)


async def test_unserializable_value_raises_serialization_error(store: EncryptedStore) -> None:
    """A value the serializer cannot handle raises SerializationError and stores nothing."""
    saver = CheckpointSaver(store)
    config = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"bad": object()}
    checkpoint["channel_versions"] = {"bad": "1"}
    with pytest.raises(SerializationError):
        await saver.aput(config, checkpoint, {}, {"bad": "1"})
    assert await saver.aget_tuple(config) is None


async def test_too_large_value_raises_record_too_large() -> None:
    """A channel value above the store's record cap raises RecordTooLargeError."""
    async with EncryptedStore(
        MemoryStore(), deterministic_key_ring(), max_record_bytes=4096, owns_store=True
    ) as small:
        saver = CheckpointSaver(small)
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"big": "x" * 10_000}
        checkpoint["channel_versions"] = {"big": "1"}
        with pytest.raises(RecordTooLargeError):
            await saver.aput(config, checkpoint, {}, {"big": "1"})


def test_next_version_is_monotonic_and_fork_safe() -> None:
    """get_next_version returns zero-padded counters with a random suffix."""
    saver = CheckpointSaver(EncryptedStore(MemoryStore(), deterministic_key_ring()))
    first = saver.get_next_version(None, None)
    second = saver.get_next_version(first, None)
    assert first.startswith(f"{1:032}.") and second.startswith(f"{2:032}.")
    assert first < second
    assert saver.get_next_version(first, None) != second
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")  # type: ignore[arg-type]
