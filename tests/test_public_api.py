"""The public surface: sorted __all__, importable names, nothing secret in reprs."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import checkpointers
from checkpointers import EncryptedStore, MemoryStore, Portal
from checkpointers.testing import deterministic_key_ring


def _raise(name: str) -> None:
    raise ImportError(f"cannot walk {name}")


def _public_modules() -> list[str]:
    """`checkpointers` and every module under it with no `_` part in its name: the
    subpackages and their modules, and the adapters installed inside the package."""
    walked = pkgutil.walk_packages(checkpointers.__path__, "checkpointers.", onerror=_raise)
    names = [m.name for m in walked if not any(p.startswith("_") for p in m.name.split("."))]
    return ["checkpointers", *sorted(names)]


PUBLIC_MODULES = _public_modules()


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def test_every_part_is_walked() -> None:
    """The walk reaches the subpackages, the ground floor and the adapters."""
    expected = {"checkpointers.auth", "checkpointers.cli", "checkpointers.crypto",
                "checkpointers.errors", "checkpointers.langgraph", "checkpointers.options",
                "checkpointers.pydantic_graph", "checkpointers.record", "checkpointers.stores",
                "checkpointers.testing", "checkpointers.tiered", "checkpointers.urls"}  # fmt: skip
    assert expected <= set(PUBLIC_MODULES)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_importable(name: str) -> None:
    """Each public module's __all__ is sorted and every name in it exists."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    for attr in exported:
        assert hasattr(module, attr), attr


def test_adapters_import_only_public_core_names() -> None:
    """Adapters import from public core modules only (no private `_` modules or names)."""
    root = Path(__file__).resolve().parents[1] / "adapters"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("checkpointers"):
                assert not any(p.startswith("_") for p in (node.module or "").split(".")), path
                assert not any(a.name.startswith("_") for a in node.names), path


GROUND_FLOOR = {"checkpointers.auth", "checkpointers.errors", "checkpointers.options",
                "checkpointers.record"}  # fmt: skip
CORE = Path(checkpointers.__file__).resolve().parent


def _core_imports(path: Path) -> set[str]:
    """The `checkpointers` modules a source file imports (at run time or for typing)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "checkpointers"}


def test_ground_floor_imports_nothing_above_it() -> None:
    """errors, record, options and auth import no checkpointers module but each other."""
    for name in GROUND_FLOOR:
        assert _core_imports(CORE / f"{name.split('.')[-1]}.py") <= GROUND_FLOOR, name


def test_stores_build_on_the_ground_floor_only() -> None:
    """Stores import the ground floor and other stores, never `urls` (which loads them)."""
    for path in (CORE / "stores").glob("*.py"):
        for name in _core_imports(path):
            assert name in GROUND_FLOOR or name.startswith("checkpointers.stores"), (path, name)


async def test_reprs_carry_no_plaintext_or_key_material() -> None:
    """repr/str of public objects built from a record carrying a marker never show it."""
    marker = b"MARKER-5bd1e0"
    ring = deterministic_key_ring()
    enc = EncryptedStore(MemoryStore(), ring)
    rid = enc.record_id("t", "", "k", "a")
    await enc.put(rid, marker)
    entry = await enc.get(rid)
    assert entry is not None
    portal = Portal.start()
    try:
        texts = [repr(entry), str(entry), repr(entry.record), repr(enc), repr(ring),
                 repr(enc.store), repr(portal)]  # fmt: skip
    finally:
        portal.close()
    for text in texts:
        assert marker.decode() not in text


def test_errors_form_one_tree() -> None:
    """Every exported exception derives from CheckpointersError."""
    for name in checkpointers.__all__:
        value = getattr(checkpointers, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, checkpointers.CheckpointersError)
