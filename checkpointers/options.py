"""Typed parsers of URL query options, and the option table every URL accepts.

A store declares the options its URLs take as a table, option name -> parser
(`Store.url_options`); `checkpointers.urls` looks every query option up in
`COMMON_OPTIONS` and in the store's table, and an unknown option is an error. A parser
turns the option's text into a typed value or raises `ConfigurationError` naming what it
expected, never echoing the value (it may come from a URL that carries a secret).

Ground floor: this module imports only `checkpointers.errors`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from checkpointers.errors import ConfigurationError

__all__ = [
    "COMMON_OPTIONS",
    "OptionTable",
    "parse_bool",
    "parse_identifier",
    "parse_non_negative_int",
    "parse_positive_int",
    "parse_seconds",
]

#: Option name -> parser of its text: the typed options one kind of URL accepts.
OptionTable = Mapping[str, Callable[[str], Any]]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


def parse_seconds(value: str) -> float:
    """A positive, finite number of seconds.

    Raises:
        ConfigurationError: not a number, or not positive and finite.
    """
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError("expected a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError("expected a positive number of seconds")
    return seconds


def parse_identifier(value: str) -> str:
    """A name safe to use as a schema, prefix or tenant: letters, digits, _ and -.

    Raises:
        ConfigurationError: empty, too long, or another character.
    """
    if not _IDENTIFIER.match(value):
        raise ConfigurationError(
            "expected 1-63 characters: a letter or _, then letters, digits, _ or -"
        )
    return value


def parse_positive_int(value: str) -> int:
    """A positive integer (ASCII digits only).

    Raises:
        ConfigurationError: not a positive integer.
    """
    if not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise ConfigurationError("expected a positive integer")
    return int(value)


def parse_non_negative_int(value: str) -> int:
    """An integer >= 0 (ASCII digits only).

    Raises:
        ConfigurationError: not an integer >= 0.
    """
    if not (value.isascii() and value.isdigit()):
        raise ConfigurationError("expected an integer >= 0")
    return int(value)


def parse_bool(value: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case).

    Raises:
        ConfigurationError: none of those.
    """
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError("expected true or false")


#: Options every URL accepts; they configure the `EncryptedStore`, not the backend.
COMMON_OPTIONS: OptionTable = {
    "ttl": parse_seconds,
    "tenant": parse_identifier,
}
