"""Where the framework adapters are found in a source checkout.

The repository keeps the adapters in a top-level `adapters/` folder, but installs them
as subpackages of `checkpointers` (`checkpointers.langgraph`, ...): a top-level module
named `adapters` would collide with other distributions. A wheel copies them into the
package (pyproject's `force-include`); a source checkout or an editable install extends
the package's `__path__` with that folder instead, so both import the same names.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["source_tree_adapters"]

#: A file only this repository's adapters folder has: a guard against extending the path
#: with an unrelated `adapters` folder (another distribution's, in site-packages).
_MARKER = "pydantic_graph.py"


def source_tree_adapters(package_path: Iterable[str]) -> list[str]:
    """The repository's `adapters/` folder beside a source-checkout package, if any.

    Nothing when the package is installed from a wheel: the adapters are inside it.
    """
    out: list[str] = []
    for entry in package_path:
        package = Path(entry)
        root = package.parent
        adapters = root / "adapters"
        if (
            not (package / "langgraph").exists()
            and (root / "pyproject.toml").is_file()
            and (adapters / _MARKER).is_file()
        ):
            out.append(str(adapters))
    return out
