"""Side-by-side benchmarks of `checkpointers` against the LangGraph and pydantic-graph peers.

Run them all with `python -m benchmarks.run` (see `benchmarks/run.py` for the options).
Nothing here is part of the installed distribution.
"""
