"""The README demo: examples/langgraph_crash_resume.py, run as a user would."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langgraph_crash_resume.py"


def run_demo(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINTERS_KEY")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_demo_crashes_and_resumes_from_the_last_completed_node(tmp_path: Path) -> None:
    """The demo creates demo.key, crashes a child mid-run and resumes without rerunning nodes."""
    out = run_demo(tmp_path)
    assert "created a new encryption key in demo.key" in out
    assert stat.S_IMODE((tmp_path / "demo.key").stat().st_mode) == 0o600
    assert (tmp_path / "checkpoints.db").exists()
    assert "CRASH inside charge_card" in out
    assert "next=['charge_card']" in out
    assert "nodes run before the crash: fetch_order, check_stock, charge_card" in out
    assert "nodes run after the resume: charge_card, ship_parcel, send_receipt" in out
    assert "OK: the run resumed from the last completed node" in out

    again = run_demo(tmp_path, "other.db")
    assert "using the existing key file demo.key" in again
    assert "OK:" in again and (tmp_path / "other.db").exists()
