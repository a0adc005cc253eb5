"""Resume a pydantic-ai 2.x agent run after its process is killed between two steps.

An order agent (a deterministic `FunctionModel`, no LLM, no network) calls two tools:
`charge` then `ship`. A child process runs it with pydantic-ai-harness's
`StepPersistence` over an encrypted `checkpointers.pydantic_ai.StepStore`, and is killed
with SIGKILL after `charge` completed, before the next model request. A new process
continues from the last snapshot: `charge` is not run again, and the output is the one an
uninterrupted run gives.

    python examples/pydantic_ai_resume.py                                  # SQLite in the cwd
    python examples/pydantic_ai_resume.py --url postgresql://localhost/db  # any durable URL

Needs `pip install 'checkpointers[pydantic-ai]'` (pydantic-ai 2.x). Keys come from
CHECKPOINTERS_KEY or CHECKPOINTERS_KEY_FILE; when neither is set, the example creates
`demo.key` (mode 0600) in the current directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai_harness.step_persistence import StepPersistence, continue_run

from checkpointers.crypto import create_key_file
from checkpointers.pydantic_ai import StepStore

DEFAULT_URL = "sqlite:///pydantic_ai_resume.db"
KEY_FILE = "demo.key"


def say(text: str) -> None:
    print(f"  [pid {os.getpid()}] {text}", flush=True)


def order_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call `charge`, then `ship`, then answer with what the tools returned."""
    returns = [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]
    if not returns:
        return ModelResponse(parts=[ToolCallPart("charge", {"cents": 4200}, tool_call_id="c1")])
    if len(returns) == 1:
        return ModelResponse(parts=[ToolCallPart("ship", {"city": "Oslo"}, tool_call_id="c2")])
    return ModelResponse(parts=[TextPart(" and ".join(map(str, returns)))])


@dataclass
class KillBeforeSecondRequest(AbstractCapability[Any]):
    """Dies with SIGKILL when the agent is about to send its second model request."""

    requests: int = 0

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        self.requests += 1
        if self.requests == 2:
            say("charge completed; killed with SIGKILL before the next model request")
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        return request_context


def order_agent(store: StepStore, run_id: str, *, crash: bool = False) -> Agent[None, str]:
    capabilities: list[AbstractCapability[Any]] = [StepPersistence(store=store, run_id=run_id)]
    if crash:
        capabilities.append(KillBeforeSecondRequest())
    agent = Agent(FunctionModel(order_model), capabilities=capabilities)

    @agent.tool_plain
    def charge(cents: int) -> str:
        say(f"tool charge({cents}) runs")
        return f"charged {cents / 100:.2f} EUR"

    @agent.tool_plain
    def ship(city: str) -> str:
        say(f"tool ship({city!r}) runs")
        return f"shipped to {city}"

    return agent


async def first_attempt(url: str, run_id: str) -> None:
    async with StepStore.from_url(url) as store:
        await order_agent(store, run_id, crash=True).run("Order 1 book to Oslo")


async def resume(url: str, run_id: str) -> None:
    async with StepStore.from_url(url) as store:
        unresolved = await store.list_unresolved_tool_effects(run_id=run_id)
        say(f"tool calls in flight at the crash: {[e.tool_name for e in unresolved]}")
        history = await continue_run(store, run_id=run_id)
        result = await order_agent(store, f"{run_id}-resumed").run(message_history=history)
        say(f"output: {result.output}")
        run = await store.get_run(run_id=f"{run_id}-resumed")
        assert run is not None
        events = await store.list_events(run_id=run.run_id)
        tools = [e.tool_name for e in events if e.kind == "tool_call_completed"]
        say(f"tools run after the resume: {tools}")


async def uninterrupted(run_id: str) -> None:
    async with StepStore.from_url("memory://") as store:
        result = await order_agent(store, run_id).run("Order 1 book to Oslo")
        say(f"uninterrupted output: {result.output}")


def ensure_keys() -> None:
    if os.environ.get("CHECKPOINTERS_KEY") or os.environ.get("CHECKPOINTERS_KEY_FILE"):
        return
    key_file = Path(KEY_FILE).resolve()
    if not key_file.exists():
        create_key_file(key_file)
        print(f"keys: created {KEY_FILE} (mode 0600); keep it, or the data cannot be read")
    os.environ["CHECKPOINTERS_KEY_FILE"] = str(key_file)  # the children inherit it


def child(phase: str, url: str, run_id: str) -> int:
    sys.stdout.flush()
    command = [sys.executable, __file__, "--phase", phase, "--url", url, "--run-id", run_id]
    return subprocess.run(command, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"store URL (default {DEFAULT_URL})")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--phase", choices=["first", "resume", "clean"], default=None)
    args = parser.parse_args()
    phases = {"first": first_attempt, "resume": resume}
    if args.phase == "clean":
        asyncio.run(uninterrupted(args.run_id))
        return 0
    if args.phase is not None:
        asyncio.run(phases[args.phase](args.url, args.run_id))
        return 0

    ensure_keys()
    run_id = args.run_id or f"order-{uuid.uuid4().hex[:8]}"
    print(f"run {run_id}: first attempt in a child process")
    code = child("first", args.url, run_id)
    print(f"the child process died (exit status {code})")
    print(f"continuing run {run_id} in a new process")
    if child("resume", args.url, run_id) != 0:
        print("the resumed run failed")
        return 1
    return child("clean", args.url, f"{run_id}-clean")


if __name__ == "__main__":
    sys.exit(main())
