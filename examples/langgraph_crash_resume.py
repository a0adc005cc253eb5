"""Crash a LangGraph run mid-way, then resume it in a new process from the last node.

    python examples/langgraph_crash_resume.py                 # ./checkpoints.db
    python examples/langgraph_crash_resume.py /tmp/demo.db    # another SQLite file
    python examples/langgraph_crash_resume.py --url memory:// # any store URL (memory
                                                               # cannot survive a crash)

A five-node pipeline runs in a child process with `durability="sync"`, so each finished
node is encrypted and saved before the next starts. The child dies abruptly
(`os._exit`) inside the third node. A second child process opens the same database,
resumes the same thread and finishes the run: the two nodes that had completed do not
run again.

Keys: with `CHECKPOINTERS_KEY` or `CHECKPOINTERS_KEY_FILE` set, those are used. Otherwise
the demo creates `demo.key` (a fresh random key, mode 0600) in the current directory,
says so, and uses it. It never stores anything unencrypted.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import operator
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from checkpointers.crypto import create_key_file
from checkpointers.langgraph import CheckpointSaver

NODES = ["fetch_order", "check_stock", "charge_card", "ship_parcel", "send_receipt"]
CRASH_NODE = "charge_card"
DEMO_KEY = "demo.key"


class Order(TypedDict, total=False):
    order_id: str
    steps: Annotated[list[str], operator.add]
    digest: str


def _node(name: str, crash_at: str | None) -> Any:
    def run(state: Order) -> Order:
        print(f"    [pid {os.getpid()}] running {name}", flush=True)
        if name == crash_at:
            print(f"    [pid {os.getpid()}] CRASH inside {name} (os._exit)", flush=True)
            os._exit(70)
        # Stand-in for real work: derive something from the state so far.
        digest = hashlib.sha256(f"{state.get('digest', '')}/{name}".encode()).hexdigest()
        return {"steps": [name], "digest": digest[:16]}

    return run


def build_graph(crash_at: str | None = None) -> StateGraph[Order]:
    """The pipeline: five nodes in a row."""
    builder = StateGraph(Order)
    for name in NODES:
        builder.add_node(name, _node(name, crash_at))
    builder.add_edge(START, NODES[0])
    for first, second in itertools.pairwise(NODES):
        builder.add_edge(first, second)
    builder.add_edge(NODES[-1], END)
    return builder


def worker(url: str, thread_id: str, crash_at: str | None) -> None:
    """Run (crash_at set) or resume (crash_at None) the thread in this process."""
    config = {"configurable": {"thread_id": thread_id}}
    with CheckpointSaver.from_url(url) as saver:
        graph = build_graph(crash_at).compile(checkpointer=saver)
        if crash_at is not None:
            graph.invoke({"order_id": thread_id, "steps": []}, config, durability="sync")
        else:
            graph.invoke(None, config, durability="sync")


def ensure_key() -> None:
    """Use the configured key, or create demo.key and use it (never plaintext)."""
    if os.environ.get("CHECKPOINTERS_KEY") or os.environ.get("CHECKPOINTERS_KEY_FILE"):
        print("using the key from CHECKPOINTERS_KEY / CHECKPOINTERS_KEY_FILE")
        return
    key_path = Path(DEMO_KEY).resolve()
    if key_path.exists():
        print(f"using the existing key file {DEMO_KEY}")
    else:
        create_key_file(key_path)
        print(f"created a new encryption key in {DEMO_KEY} (mode 0600); keep it to read")
        print("  the checkpoints again, or set CHECKPOINTERS_KEY_FILE to your own key file")
    os.environ["CHECKPOINTERS_KEY_FILE"] = str(key_path)


def run_child(url: str, thread_id: str, mode: str) -> tuple[int, list[str]]:
    """Run this file as a worker process; return its exit code and the nodes it ran."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode,
           "--url", url, "--thread", thread_id]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    sys.stdout.write(proc.stdout)
    if proc.returncode not in (0, 70):
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"the {mode} process failed with exit code {proc.returncode}")
    ran = [line.split("running ", 1)[1] for line in proc.stdout.splitlines() if "running " in line]
    return proc.returncode, ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", nargs="?", default="checkpoints.db", help="SQLite file")
    parser.add_argument("--url", help="store URL (overrides the SQLite file)")
    parser.add_argument("--worker", choices=["crash", "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--thread", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{args.db}"

    if args.worker:
        worker(url, args.thread, CRASH_NODE if args.worker == "crash" else None)
        return 0

    ensure_key()
    thread_id = f"order-{uuid.uuid4().hex[:8]}"
    print(f"store: {url}   thread: {thread_id}")

    print(f"\n1) child process runs the pipeline and crashes inside {CRASH_NODE}:")
    code, before = run_child(url, thread_id, "crash")
    print(f"   child exited with code {code} (killed mid-run)")

    with CheckpointSaver.from_url(url) as saver:
        state = (
            build_graph()
            .compile(checkpointer=saver)
            .get_state({"configurable": {"thread_id": thread_id}})
        )
    print(f"   saved progress: steps={state.values.get('steps')} next={list(state.next)}")

    print("\n2) a new process resumes the same thread:")
    _, after = run_child(url, thread_id, "resume")

    with CheckpointSaver.from_url(url) as saver:
        final = (
            build_graph()
            .compile(checkpointer=saver)
            .get_state({"configurable": {"thread_id": thread_id}})
        )
    steps = final.values.get("steps", [])
    completed_before = [n for n in before if n != CRASH_NODE]
    print(f"\nnodes run before the crash: {', '.join(before)} ({CRASH_NODE} died mid-way)")
    print(f"nodes run after the resume: {', '.join(after)}")
    print(f"final state steps:          {', '.join(steps)}")
    if steps == NODES and not set(completed_before) & set(after):
        print("OK: the run resumed from the last completed node; completed nodes did not run again")
        return 0
    print("UNEXPECTED: the resumed run does not match")
    return 1


if __name__ == "__main__":
    sys.exit(main())
