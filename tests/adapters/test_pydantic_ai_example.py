"""The README demo: examples/pydantic_ai_resume.py, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pydantic_ai_resume.py"


def test_agent_killed_between_steps_resumes_in_a_new_process(tmp_path: Path) -> None:
    """SIGKILL after `charge`: a new process finishes with `ship` only, same output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINTERS_KEY")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "created demo.key" in out and (tmp_path / "pydantic_ai_resume.db").exists()
    assert "killed with SIGKILL before the next model request" in out
    assert "the child process died (exit status -9)" in out
    assert out.count("tool charge(4200) runs") == 2  # the crashed run and the clean one
    assert "tools run after the resume: ['ship']" in out
    output = "charged 42.00 EUR and shipped to Oslo"
    assert f"output: {output}" in out and f"uninterrupted output: {output}" in out


def test_readme_quickstart_runs_as_pasted(tmp_path: Path) -> None:
    """examples/pydantic_ai_quickstart.py (shown whole in the README) runs twice, no key set."""
    for _ in range(2):  # the first run creates app.key, the second uses it
        done = subprocess.run(
            [sys.executable, str(EXAMPLE.parent / "pydantic_ai_quickstart.py")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(EXAMPLE.parents[1])},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout == "done 4\n"
    assert {p.name for p in tmp_path.iterdir()} >= {"app.key", "checkpoints.db"}
