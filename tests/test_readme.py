"""The README tells the truth: its commands are the ones CI runs, its code runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """Each line of the test command printed in the README is a line of .ci/run."""
    command = next(b.strip() for b in _blocks("bash") if "pytest" in b)
    for line in command.splitlines():
        assert line in (ROOT / ".ci" / "run").read_text().splitlines()


EXAMPLES = ROOT / "examples"

#: The examples the README shows whole, with what each prints (run in a fresh directory).
RUNNABLE = {
    "langgraph_async.py": "['hello', 'echo: hello']",
    "langgraph_sync.py": "3",
    "pydantic_graph_quickstart.py": "6",
    "core.py": "['n-1']",
}

#: The extra each framework a program imports needs.
_EXTRA_OF_IMPORT = {"langgraph": "langgraph", "pydantic_graph": "pydantic-graph",
                    "pydantic_ai": "pydantic-ai"}  # fmt: skip


def test_readme_python_blocks_are_whole_examples() -> None:
    """Each Python block of the README is a whole examples/ file, named on its first line."""
    blocks = _blocks("python")
    assert len(blocks) >= 5
    for block in blocks:
        first = block.splitlines()[0]
        match = re.fullmatch(r"# examples/(\w+\.py)\b.*", first)
        assert match, f"a README Python block is not a whole example: {first!r}"
        assert block == (EXAMPLES / match[1]).read_text(), match[1]


def test_every_example_compiles() -> None:
    """Every examples/ file compiles (the Azure one runs only on Azure)."""
    for path in EXAMPLES.glob("*.py"):
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_readme_example_runs_as_pasted(tmp_path: Path, name: str) -> None:
    """A README example runs in an empty directory with no key, prints what it says, runs again."""
    outputs = []
    for _ in range(2):  # the first run creates app.key, the second uses it
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert outputs[0] == RUNNABLE[name] + "\n"
    assert {p.name for p in tmp_path.iterdir()} >= {"app.key", "checkpoints.db"}


def test_readme_example_commands_install_their_extras() -> None:
    """A README command that runs an example installs the extras that example imports."""
    commands = [line for b in _blocks("bash") for line in b.splitlines() if "examples/" in line]
    assert len(commands) >= 2
    for line in commands:
        name = re.search(r"examples/(\w+\.py)", line)
        assert name
        source = (EXAMPLES / name[1]).read_text()
        installed = re.search(r"pip install .*-e '\.\[([\w,-]+)\]'", line)
        assert installed, line
        for module, extra in _EXTRA_OF_IMPORT.items():
            if re.search(rf"^(from|import) {module}\b", source, flags=re.MULTILINE):
                assert extra in installed[1].split(","), (name[1], extra)


def test_install_section_is_true_for_a_clone() -> None:
    """The install commands work from a clone and the section says the package is not on PyPI."""
    section = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "not on PyPI yet" in section
    commands = [line for b in _blocks("bash") for line in b.splitlines() if "pip install" in line]
    assert commands
    for line in commands:
        assert "pip install 'checkpointers[" not in line, line  # not on PyPI: no such command


def test_demo_key_file_is_ignored_by_git() -> None:
    """The key file the demos create (demo.key, any *.key) is never picked up by `git add .`."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["demo.key", "examples/demo.key", "app.key"]
    done = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.stdout.split() == paths


def test_readme_diff_lines_come_from_examples() -> None:
    """Each added or kept line of the README's diffs ("Coming from ...") is in an example."""
    sources = "\n".join(p.read_text() for p in EXAMPLES.glob("*.py"))
    diffs = _blocks("diff")
    assert diffs
    for block in diffs:
        for line in block.splitlines():
            if line.startswith((" ", "+")):
                assert line[1:] in sources, line
