"""A missing extra is one MissingDependencyError naming the pip install, never a deep traceback.

Each test runs a fresh interpreter in which a meta path finder (installed by a
`sitecustomize` module) makes the extra's modules unimportable, as if it were not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_BLOCKER = textwrap.dedent(
    """
    import os
    import sys

    class _NotInstalled:
        blocked = set(os.environ["BLOCKED_MODULES"].split(","))

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
    """
)


def _run(tmp_path: Path, blocked: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(tmp_path),
        "BLOCKED_MODULES": blocked,
    }
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, check=False
    )


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("checkpointers.langgraph", "langgraph", "langgraph"),
        ("checkpointers.langgraph", "langchain_core", "langgraph"),
        ("checkpointers.pydantic_graph", "pydantic_graph", "pydantic-graph"),
        ("checkpointers.cli._app", "typer", "cli"),
    ],
)
def test_adapter_without_its_extra_names_the_install(
    tmp_path: Path, module: str, blocked: str, extra: str
) -> None:
    """Importing an adapter without its framework raises MissingDependencyError naming the extra."""
    done = _run(
        tmp_path,
        blocked,
        _python(f"""
            import importlib
            from checkpointers import MissingDependencyError
            try:
                importlib.import_module({module!r})
            except MissingDependencyError as exc:
                assert isinstance(exc, ImportError) and exc.extra == {extra!r}
                print(exc)
            """),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        f"module {blocked!r} is not installed: pip install 'checkpointers[{extra}]'"
    )


def test_core_and_cli_package_import_without_extras(tmp_path: Path) -> None:
    """The core and `checkpointers.cli` (for its `main`) import with no extra installed."""
    blocked = "typer,langgraph,langchain_core,pydantic_graph,redis,asyncpg,azure,prometheus_client"
    done = _run(tmp_path, blocked, _python("import checkpointers, checkpointers.cli; print('ok')"))
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]


def test_console_script_without_cli_extra_prints_one_error_line(tmp_path: Path) -> None:
    """`checkpointers` without the cli extra prints one `error:` line and exits 2."""
    script = Path(sys.executable).with_name("checkpointers")
    argv = (
        [str(script)] if script.exists() else _python("from checkpointers.cli import main; main()")
    )
    done = _run(tmp_path, "typer", [*argv, "--help"])
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: module 'typer' is not installed: pip install 'checkpointers[cli]'\n"
    )


def test_python_dash_m_without_cli_extra_prints_one_error_line(tmp_path: Path) -> None:
    """`python -m checkpointers.cli` without the cli extra fails the same way."""
    done = _run(tmp_path, "typer", [sys.executable, "-m", "checkpointers.cli", "threads"])
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "error: module 'typer' is not installed: pip install 'checkpointers[cli]'"
    ]
