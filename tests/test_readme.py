"""The README tells the truth: its commands are the ones CI runs, its code runs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """The test command printed in the README is a line of .ci/run."""
    command = next(b.strip() for b in _blocks("bash") if "pytest" in b)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_python_comes_from_examples() -> None:
    """Each indented Python block of the README is a verbatim excerpt of examples/."""
    sources = "\n".join(p.read_text() for p in (ROOT / "examples").glob("*.py"))
    quoted = [b for b in _blocks("python") if b.startswith("    ")]
    assert len(quoted) >= 4
    for block in quoted:
        assert block in sources, textwrap.shorten(block, 80)


def test_quickstart_example_runs(tmp_path: Path) -> None:
    """examples/quickstart.py runs end to end and prints what the README says."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["['hello', 'echo: hello']", "3", "6", "['n-1']"]


def test_demo_key_file_is_ignored_by_git() -> None:
    """The key file the demos create (demo.key, any *.key) is never picked up by `git add .`."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["demo.key", "examples/demo.key", "app.key"]
    done = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.stdout.split() == paths
