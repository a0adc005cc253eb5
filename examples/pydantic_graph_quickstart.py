# examples/pydantic_graph_quickstart.py: pydantic-graph on SQLite
# (pip install -e '.[pydantic-graph]')
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph

from checkpointers import KeyRing
from checkpointers.crypto import create_key_file
from checkpointers.pydantic_graph import StatePersistence

URL = "sqlite:///checkpoints.db"  # or redis://..., postgresql://..., a list of tiers
KEY_FILE = Path("app.key")  # development key, mode 0600; production: Azure Key Vault
if not KEY_FILE.exists():  # as `checkpointers keys generate --file app.key` does
    create_key_file(KEY_FILE)
keys = KeyRing.from_key_file(KEY_FILE)


@dataclass
class Tally:
    total: int = 0


@dataclass
class Add(BaseNode[Tally, None, int]):
    amount: int

    async def run(self, ctx: GraphRunContext[Tally]) -> Add | End[int]:
        ctx.state.total += self.amount
        return Add(self.amount - 1) if self.amount > 1 else End(ctx.state.total)


tally_graph = Graph(nodes=[Add])


async def main() -> None:
    async with (
        StatePersistence.from_url(URL, run_id="tally-1", keys=keys) as persistence,
        tally_graph.iter(Add(3), state=Tally(), persistence=persistence) as run,
    ):
        await run.next()  # one node runs, then this process stops (deploy, crash...)
    # later, in a new process: requeue what a dead worker held, then resume
    async with StatePersistence.from_url(URL, run_id="tally-1", keys=keys) as persistence:
        persistence.set_graph_types(tally_graph)
        await persistence.recover()
        async with tally_graph.iter_from_persistence(persistence) as run:
            async for _node in run:
                pass
        assert run.result is not None
        print(run.result.output)  # 6


asyncio.run(main())
