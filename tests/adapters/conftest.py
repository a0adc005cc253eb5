"""pydantic-ai 2.x pins pydantic-graph 2.x, so the pydantic-ai-harness tests cannot run in
the environment of the pydantic-graph 1.x suite: without the harness, this folder's
`test_pydantic_ai*.py` are not collected. `.ci/run` (and the README's test command) runs
them in their own venv, naming the files: paths given on the command line are always
collected, so a broken install there fails instead of skipping."""

from __future__ import annotations

import importlib.util

collect_ignore_glob = (
    [] if importlib.util.find_spec("pydantic_ai_harness") else ["test_pydantic_ai*.py"]
)
