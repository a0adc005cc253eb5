# examples/pydantic_ai_quickstart.py: pydantic-ai 2.x on SQLite, through pydantic-ai-harness
# (pip install -e '.[pydantic-ai]', in its own venv: it cannot share one with pydantic-graph 1.x)
import asyncio
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai_harness.step_persistence import StepPersistence, continue_run

from checkpointers import KeyRing
from checkpointers.crypto import create_key_file
from checkpointers.pydantic_ai import StepStore

URL = "sqlite:///checkpoints.db"  # or redis://..., postgresql://..., a list of tiers
KEY_FILE = Path("app.key")  # development key, mode 0600; production: Azure Key Vault
if not KEY_FILE.exists():  # as `checkpointers keys generate --file app.key` does
    create_key_file(KEY_FILE)
keys = KeyRing.from_key_file(KEY_FILE)


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:  # no LLM here
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("add", {"a": 2, "b": 4}, tool_call_id="c1")])
    return ModelResponse(parts=[TextPart("done")])


async def main() -> None:
    async with StepStore.from_url(URL, keys=keys) as store:
        agent = Agent(FunctionModel(model), capabilities=[StepPersistence(store=store)])

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            return a + b

        result = await agent.run("add 2 and 4")
        run_id = (await store.list_runs())[-1].run_id  # newest last
        history = await continue_run(store, run_id=run_id)  # e.g. in a new process
        print(result.output, len(history))  # done 4


asyncio.run(main())
