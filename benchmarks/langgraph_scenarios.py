"""LangGraph scenarios: 1 (throughput), 2 (conversation growth), 5 (encryption cost).

Each function takes an opened checkpointer (ours or a peer, the same graph either way)
and returns a JSON-ready dict. `benchmarks.run` opens the configurations, calls these,
and turns the dicts into ratio tables.
"""

from __future__ import annotations

import asyncio
import operator
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from benchmarks._stats import Probe, chat_text, summary_ms

PROBED = ("aput", "aput_writes", "aget_tuple")


# -- scenario 1: throughput -----------------------------------------------------------


def chain_graph(nodes: int, payloads: list[str]) -> StateGraph:
    """`nodes` nodes in a line; node i writes ~1 payload of new state to its own channel."""
    fields: dict[str, Any] = {"task": int}
    fields.update({f"c{i}": str for i in range(nodes)})
    state = TypedDict("ChainState", fields, total=False)  # type: ignore[misc]
    builder = StateGraph(state)

    def make(i: int) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def node(s: dict[str, Any]) -> dict[str, Any]:
            return {f"c{i}": payloads[(s["task"] * nodes + i) % len(payloads)]}

        return node

    previous = START
    for i in range(nodes):
        builder.add_node(f"n{i}", make(i))
        builder.add_edge(previous, f"n{i}")
        previous = f"n{i}"
    builder.add_edge(previous, END)
    return builder


async def throughput(
    saver: Any,
    *,
    threads: int,
    nodes: int,
    concurrency: int,
    payload_bytes: int,
    warmup: int = 2,
    probe: bool = True,
) -> dict[str, Any]:
    """Run `threads` graphs of `nodes` nodes, `concurrency` at a time, through `saver`."""
    payloads = [chat_text(payload_bytes, seed) for seed in range(97)]
    graph = chain_graph(nodes, payloads).compile(checkpointer=saver)
    for w in range(warmup):
        await graph.ainvoke({"task": w}, {"configurable": {"thread_id": f"warmup-{w}"}})
    probes = Probe()
    if probe:
        probes.attach(saver, *PROBED)
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []
    failed: set[int] = set()

    async def one(i: int) -> None:
        async with gate:
            try:
                await graph.ainvoke({"task": i}, {"configurable": {"thread_id": f"thread-{i}"}})
            except Exception as exc:
                failed.add(i)
                errors.append(f"thread-{i}: {type(exc).__name__}: {exc}"[:200])

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(threads)))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    puts = len(probes.samples["aput"]) if probe else threads * (nodes + 2)
    result: dict[str, Any] = {
        "wall_s": wall,
        "cpu_s": cpu,  # this process only (graph, saver, drivers), not the servers
        "checkpoints": puts,
        "checkpoints_per_s": puts / wall,
        # Client CPU per checkpoint: the whole process (LangGraph's loop, the saver, its
        # driver and their threads) over the run, divided by the checkpoints written.
        "cpu_us_per_checkpoint": cpu / puts * 1e6 if puts else None,
    }
    if probe:
        for name in PROBED:
            result[f"{name}_under_load"] = summary_ms(probes.samples[name])
        # get_tuple on a quiet loop: the store's latency, not the wait behind 19 graphs.
        idle = Probe()
        idle.attach(saver, "aget_tuple")
        for _ in range(2):
            for i in range(threads):
                try:
                    await saver.aget_tuple({"configurable": {"thread_id": f"thread-{i}"}})
                except Exception as exc:
                    errors.append(f"aget_tuple thread-{i}: {type(exc).__name__}: {exc}"[:200])
        result["aget_tuple_idle"] = summary_ms(idle.samples["aget_tuple"])
    last = threads - 1
    if last not in failed:
        try:
            got = await saver.aget_tuple({"configurable": {"thread_id": f"thread-{last}"}})
        except Exception as exc:
            errors.append(f"final aget_tuple: {type(exc).__name__}: {exc}"[:200])
        else:
            if got is None or f"c{nodes - 1}" not in got.checkpoint["channel_values"]:
                errors.append("the last checkpoint does not hold the last node's output")
    # Every failed call or run is counted: a side with errors is reported as failed.
    result["errors"] = len(errors)
    result["first_errors"] = errors[:3]
    return result


# -- scenario 2: conversation growth ---------------------------------------------------


class Conversation(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: Annotated[int, operator.add]


def conversation_graph() -> StateGraph:
    """One node per turn that counts turns; the turn's input appends one message."""

    async def agent(state: Conversation) -> dict[str, Any]:
        return {"turns": 1}

    builder = StateGraph(Conversation)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder


async def growth(
    saver: Any,
    measure: Callable[[], Awaitable[int | None]] | None,
    *,
    turns: int,
    message_bytes: int,
    samples: int = 10,
) -> dict[str, Any]:
    """One thread, `turns` turns, each appending a `message_bytes` message."""
    graph = conversation_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "conversation"}}
    every = max(1, turns // samples)
    curve: list[tuple[int, int | None]] = []
    if measure is not None:
        curve.append((0, await measure()))
    latencies: list[float] = []
    for turn in range(1, turns + 1):
        cls = HumanMessage if turn % 2 else AIMessage
        message = cls(content=chat_text(message_bytes, turn), id=f"m{turn}")
        start = time.perf_counter()
        await graph.ainvoke({"messages": [message]}, config)
        latencies.append(time.perf_counter() - start)
        if measure is not None and (turn % every == 0 or turn == turns):
            curve.append((turn, await measure()))
    state = await graph.aget_state(config)
    if len(state.values["messages"]) != turns or state.values["turns"] != turns:
        raise AssertionError("the conversation did not keep every message")
    tenth = max(1, turns // 10)
    result: dict[str, Any] = {
        "turn_latency": summary_ms(latencies),
        "first_tenth_ms": statistics.mean(latencies[:tenth]) * 1e3,
        "last_tenth_ms": statistics.mean(latencies[-tenth:]) * 1e3,
        "curve": curve,
        "latencies_ms": [t * 1e3 for t in latencies],
    }
    if measure is not None and curve[-1][1] is not None:
        base = curve[0][1] or 0
        half = min(curve, key=lambda point: abs(point[0] - turns / 2))
        first = ((half[1] or 0) - base) / max(1, half[0])
        second = ((curve[-1][1] or 0) - (half[1] or 0)) / max(1, turns - half[0])
        result["stored_bytes_open"] = curve[-1][1]
        result["stored_bytes_net"] = (curve[-1][1] or 0) - base
        # Bytes per turn in the second half over the first: ~1 linear, ~3 quadratic.
        result["second_half_over_first_half"] = second / first if first > 0 else None
    return result
