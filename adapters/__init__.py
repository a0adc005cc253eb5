"""Framework adapters over the `checkpointers` core: `adapters.langgraph` and
`adapters.pydantic_graph`. Thin: no storage logic lives here."""
