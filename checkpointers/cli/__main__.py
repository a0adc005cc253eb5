"""`python -m checkpointers.cli`: the `checkpointers` command."""

from checkpointers.cli import main

main()
