"""Debian binaries the tests need but a fresh machine may lack (pgbouncer), installed on
first use as the harness installs Azurite, so that the README's test command alone is
enough.

Order: the binary on PATH or in /usr/sbin; else a copy unpacked from the Debian package
into the harness cache (`apt-get download` + `dpkg-deb -x`: no root needed, nothing
installed system-wide); else, as root, `apt-get install` (after one `apt-get update` when
the package lists are empty). Installs are serialised with a file lock.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

from tests.harness._common import HarnessUnavailable, is_root, which
from tests.harness.azurite import cache_root

__all__ = ["ensure_debian_binary"]


def _runs(binary: Path | str) -> bool:
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, timeout=30, check=False
        )
    except OSError:
        return False
    return done.returncode == 0


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    apt = which("apt-get")
    if apt is None:
        raise HarnessUnavailable("not a Debian system (no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(
            [apt, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessUnavailable(f"apt-get {args[0]} timed out after {timeout}s") from exc


def _unpack(package: str, binary: str, prefix: Path, timeout: float) -> Path | None:
    """`apt-get download` the package and unpack it under `prefix`; its binary, or None."""
    with tempfile.TemporaryDirectory(dir=prefix.parent) as tmp:
        done = subprocess.run(
            ["apt-get", "download", "-qq", package],
            capture_output=True, text=True, timeout=timeout, cwd=tmp, check=False,
        )  # fmt: skip
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if done.returncode != 0 or not debs:
            return None
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(prefix)], check=True, timeout=60)
    found = next((p for p in (prefix / "usr/sbin" / binary, prefix / "usr/bin" / binary)
                  if p.exists()), None)  # fmt: skip
    return found if found is not None and _runs(found) else None


def ensure_debian_binary(
    package: str, binary: str, timeout: float = 300.0, *, installed: bool = True
) -> str:
    """The path of `binary`, from the Debian `package`, installing it on first use.

    Args:
        installed: look for an installed binary first (False: only the cached copy, for
            the harness's own test of a fresh machine).

    Raises:
        HarnessUnavailable: not found, and it could not be installed here.
    """
    found = which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )
    if installed and found is not None:
        return found
    prefix = cache_root() / package
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with (prefix.parent / f".{package}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        unpacked = prefix / "usr" / "sbin" / binary
        if unpacked.exists() and _runs(unpacked):
            return str(unpacked)
        if which("apt-get") is None or which("dpkg-deb") is None:
            raise HarnessUnavailable(f"no {binary} binary and no apt-get to fetch {package}")
        got = _unpack(package, binary, prefix, timeout)
        if got is not None:
            return str(got)
        if not is_root():
            raise HarnessUnavailable(
                f"no {binary} binary: apt-get download {package} failed or its libraries "
                f"are missing (install the Debian package {package})"
            )
        done = _apt("install", "-y", "-qq", "--no-install-recommends", package, timeout=timeout)
        if done.returncode != 0:  # a fresh image has no package lists yet
            _apt("update", "-qq", timeout=timeout)
            done = _apt("install", "-y", "-qq", "--no-install-recommends", package, timeout=timeout)
        found = which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}")
                                  else None)  # fmt: skip
        if done.returncode != 0 or found is None:
            raise HarnessUnavailable(f"apt-get install {package} failed: {done.stderr[-800:]}")
        return found
