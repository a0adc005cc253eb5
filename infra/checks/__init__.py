"""checkov checks specific to this deployment (see checkpointers_invariants.py)."""
