"""The `checkpointers` command starts fast: `--help` loads neither rich nor the tiers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent(
    """
    import contextlib, io, sys
    from checkpointers.cli import main
    sys.argv = ["checkpointers", "--help"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main()
    heavy = ("rich", "checkpointers.tiered", "asyncpg", "redis", "azure")
    print(sorted(m for m in sys.modules if m.split(".")[0] in heavy
                 or m.startswith("checkpointers.tiered")))
    """
)


def test_help_loads_no_rich_tiers_or_drivers() -> None:
    """`checkpointers --help` imports no rich (plain help), no tiers and no store driver."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
