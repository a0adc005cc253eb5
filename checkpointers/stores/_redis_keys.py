"""Key names of `RedisStore` (private): the prefix, the escaping, the hash tags.

``P`` is the key prefix and ``T`` = ``P{<tenant>,<thread>}`` a thread's key base: every
key of one thread starts with ``T``, so all of them share one cluster slot.
``P{<tenant>}:threads`` lists a tenant's threads and ``P:tenants`` the tenants, each a lex
set with an expiry set beside it in its slot (``P{<tenant>}:threads:e``,
``P{P:tenants}:e``: a hash tag naming exactly the lex set's name shares its slot).
``P{<tenant>,}`` (thread ``""``) is the tenant's own key base: its records (the
blind-index key) live as long as the tenant.

Tenant and thread are escaped (``%``, ``{``, ``}`` and ``,`` become ``%XX``) so user ids
can neither inject a hash tag nor collide; the prefix admits no brace and no glob
character, so nothing a user supplies shapes a key beyond its own escaped field.
"""

from __future__ import annotations

import re

from checkpointers.errors import ConfigurationError

__all__ = [
    "DEFAULT_PREFIX",
    "expiry_key",
    "parse_prefix",
    "straggler_pattern",
    "tenants_key",
    "thread_tag",
    "threads_key",
]

DEFAULT_PREFIX = "checkpointers:"
_PREFIX = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ",": "%2C"})
_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def parse_prefix(value: str) -> str:
    """A key prefix: 1-64 letters, digits, ``_ . : -`` (no braces, no glob characters)."""
    if not _PREFIX.match(value):
        raise ConfigurationError("expected 1-64 characters among letters, digits, _ . : -")
    return value


def _esc(text: str) -> str:
    return text.translate(_ESCAPES)


def thread_tag(prefix: str, tenant: str, thread: str) -> str:
    """The thread's key base ``P{<tenant>,<thread>}``: its hash tag names its slot."""
    return f"{prefix}{{{_esc(tenant)},{_esc(thread)}}}"


def threads_key(prefix: str, tenant: str) -> str:
    """The lex set of the tenant's threads."""
    return f"{prefix}{{{_esc(tenant)}}}:threads"


def tenants_key(prefix: str) -> str:
    """The lex set of tenants."""
    return f"{prefix}tenants"


def expiry_key(prefix: str, tenant: str | None) -> str:
    """The expiry set beside `threads_key` (or `tenants_key` for None), in the same slot."""
    if tenant is None:
        return f"{prefix}{{{tenants_key(prefix)}}}:e"
    return threads_key(prefix, tenant) + ":e"


def straggler_pattern(prefix: str, tenant: str) -> str:
    """A SCAN pattern matching every key of every thread of `tenant`."""
    return f"{prefix}{{{_esc(tenant)},".translate(_GLOB) + "*"
