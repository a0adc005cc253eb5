"""The global options of the `checkpointers` command and the keys they name (private).

`Options` is what the root callback parses; every subcommand reads it from the typer
context with `options(ctx)`. Keys come from `--key-file`, else from ``CHECKPOINTERS_KEY``
or ``CHECKPOINTERS_KEY_FILE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

from checkpointers.crypto.local import KEY_FILE_ENV, load_env_keys, read_key_file
from checkpointers.crypto.provider import KeyEncryptionKey
from checkpointers.errors import ConfigurationError

__all__ = ["Options", "key_file_path", "key_versions", "options"]


@dataclass(frozen=True)
class Options:
    """The global options, shared by every subcommand through the typer context."""

    urls: tuple[str, ...]
    tenant: str | None
    as_json: bool
    key_file: Path | None


def options(ctx: typer.Context) -> Options:
    opts = ctx.find_root().obj
    if not isinstance(opts, Options):  # pragma: no cover - the callback always sets it
        raise ConfigurationError("internal: global options are missing")
    return opts


def key_versions(opts: Options) -> list[KeyEncryptionKey]:
    if opts.key_file is not None:
        return list(read_key_file(opts.key_file))
    return list(load_env_keys())


def key_file_path(opts: Options, file: Path | None) -> Path:
    if file is not None:
        return file
    if opts.key_file is not None:
        return opts.key_file
    env = os.environ.get(KEY_FILE_ENV, "").strip()
    if env:
        return Path(env)
    raise ConfigurationError(f"no key file: pass --file, --key-file or set {KEY_FILE_ENV}")
