"""The installed distribution: one top-level package, `checkpointers`, with the adapters in it.

The repository keeps the adapters in a top-level `adapters/` folder; the wheel must install
them as `checkpointers.langgraph` and `checkpointers.pydantic_graph` (pyproject's
`force-include`) and nothing else at the top level (AdapterHub installs an `adapters`).

How the wheel test runs, and why:

- The wheel is built from this working tree with `pip wheel --no-deps` (hatchling comes
  from the package index into pip's isolated build environment; pip's cache keeps it warm).
- It is installed with `pip install --no-deps` into a fresh venv made without pip
  (`venv --without-pip`, then the test interpreter's pip with `--python`): fast and offline.
- The frameworks (langgraph, pydantic-graph, cryptography, ...) are not downloaded again: a
  `.pth` file in the fresh venv puts the test interpreter's site-packages on `sys.path`
  after the fresh venv's own. A plain path line in a `.pth` adds the folder without
  processing the `.pth` files inside it, so the editable install's
  `_editable_impl_checkpointers.pth` (which points at this checkout) stays inert there.
- The imports run with `python -I` from an empty directory, so neither the current
  directory nor `PYTHONPATH` can bring this checkout back; the probe reports the file of
  every `checkpointers` module it loaded and the test checks they all sit in the fresh
  venv's site-packages.

Nothing is skipped: a build or install that cannot run fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from checkpointers._layout import source_tree_adapters

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = REPO / "adapters"
PACKAGE = REPO / "checkpointers"

#: The fresh venv's site-packages, where the wheel goes.
PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"

#: Run inside the fresh venv: import the adapters as a user would, report where they came from.
PROBE = """
import importlib.util, json, sys
from checkpointers.langgraph import CheckpointSaver
from checkpointers.pydantic_graph import StatePersistence
import checkpointers
print(json.dumps({
    "package_path": list(checkpointers.__path__),
    "modules": {
        name: getattr(module, "__file__", None)
        for name, module in sys.modules.items()
        if name == "checkpointers" or name.startswith("checkpointers.")
    },
    "saver": sys.modules[CheckpointSaver.__module__].__file__,
    "persistence": sys.modules[StatePersistence.__module__].__file__,
    "adapters": repr(importlib.util.find_spec("adapters")),
}))
"""


def _run(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    command = " ".join(str(arg) for arg in args)
    assert result.returncode == 0, f"{command[:300]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _source_files(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this working tree."""
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, REPO, cwd=out)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_only_the_checkpointers_package(wheel: Path) -> None:
    """Every file of the wheel is under `checkpointers/` or its dist-info, adapters included."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    outside = sorted(
        name for name in names if name.split("/")[0] not in {"checkpointers", dist_info}
    )
    assert outside == []
    expected = {
        "checkpointers/langgraph/__init__.py",
        "checkpointers/pydantic_graph.py",
        "checkpointers/py.typed",
        *(f"checkpointers/{name}" for name in _source_files(ADAPTERS)),
    }
    assert sorted(expected - names) == []


def test_no_adapter_file_shadows_a_core_file() -> None:
    """No file of `adapters/` has the path of a file of `checkpointers/` (the wheel would overwrite it)."""
    assert sorted(_source_files(ADAPTERS) & _source_files(PACKAGE)) == []


def test_wheel_installs_the_adapters_inside_the_package(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel in a fresh venv, both adapters import from that venv and `adapters` does not exist."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run(
        sys.executable, "-m", "pip", "--python", python,
        "install", "--no-deps", "--no-index", wheel,
        cwd=tmp_path,
    )  # fmt: skip
    purelib = Path(_run(python, "-I", "-c", PURELIB, cwd=tmp_path).strip())
    ours = dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib"))
    (purelib / "_checkpointers_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    empty = tmp_path / "empty"
    empty.mkdir()

    report = json.loads(_run(python, "-I", "-c", PROBE, cwd=empty))

    installed = purelib / "checkpointers"
    assert [Path(entry) for entry in report["package_path"]] == [installed]
    assert Path(report["saver"]) == installed / "langgraph" / "__init__.py"
    assert Path(report["persistence"]) == installed / "pydantic_graph.py"
    strays = {
        name: file
        for name, file in report["modules"].items()
        if file is None or not Path(file).is_relative_to(installed)
    }
    assert strays == {}
    assert report["adapters"] == "None"


def test_source_checkout_resolves_the_adapters_folder() -> None:
    """In this checkout `checkpointers.langgraph` and `checkpointers.pydantic_graph` are the files in `adapters/`."""
    langgraph = importlib.util.find_spec("checkpointers.langgraph")
    pydantic_graph = importlib.util.find_spec("checkpointers.pydantic_graph")
    assert langgraph is not None
    assert pydantic_graph is not None
    assert langgraph.origin == str(ADAPTERS / "langgraph" / "__init__.py")
    assert pydantic_graph.origin == str(ADAPTERS / "pydantic_graph.py")


def _checkout(root: Path) -> Path:
    """A minimal source checkout under `root`; returns its package folder."""
    (root / "checkpointers").mkdir()
    (root / "adapters").mkdir()
    (root / "pyproject.toml").write_text("")
    (root / "adapters" / "pydantic_graph.py").write_text("")
    return root / "checkpointers"


def test_layout_extends_a_source_checkout(tmp_path: Path) -> None:
    """A package folder beside a pyproject.toml and this project's `adapters/` gets that folder."""
    package = _checkout(tmp_path)

    assert source_tree_adapters([str(package)]) == [str(tmp_path / "adapters")]


def _installed_package(root: Path) -> None:
    (root / "checkpointers" / "langgraph").mkdir()


def _unrelated_adapters(root: Path) -> None:
    (root / "adapters" / "pydantic_graph.py").unlink()
    (root / "adapters" / "__init__.py").write_text("")


def _no_pyproject(root: Path) -> None:
    (root / "pyproject.toml").unlink()


@pytest.mark.parametrize(
    "spoil",
    [_installed_package, _unrelated_adapters, _no_pyproject],
    ids=["package-has-langgraph", "unrelated-adapters", "no-pyproject"],
)
def test_layout_leaves_other_folders_alone(tmp_path: Path, spoil: Callable[[Path], None]) -> None:
    """A package folder that is not a source checkout of this project gets no extra path."""
    package = _checkout(tmp_path)
    spoil(tmp_path)

    assert source_tree_adapters([str(package)]) == []
