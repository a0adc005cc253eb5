"""Exceptions raised by checkpointers.

Every exception the package raises on purpose derives from one root::

    CheckpointersError
    ├── ConfigurationError        (also ValueError)  bad URL, option, key file, missing extra
    │   └── MissingDependencyError (also ImportError) an optional extra is not installed
    ├── RecordTooLargeError       (also ValueError)  a record above the configured size cap
    ├── SerializationError        (also TypeError)   state that cannot be serialized
    ├── KeyUnavailableError                          key id not in the ring, vault unreachable
    ├── IntegrityError                               tampered, truncated, moved, plaintext,
    │                                                unknown format: never returns data
    ├── ConflictError                                compare-and-set lost a race
    ├── RecordNotFoundError       (also LookupError) an operation needs a record that is absent
    └── StoreUnavailableError                        backend down; says if a write may have
                                                     been applied

Messages carry routing ids, key ids and sizes only: never plaintext, key material or a URL.
"""

from __future__ import annotations

__all__ = [
    "CheckpointersError",
    "ConfigurationError",
    "ConflictError",
    "IntegrityError",
    "KeyUnavailableError",
    "MissingDependencyError",
    "RecordNotFoundError",
    "RecordTooLargeError",
    "SerializationError",
    "StoreUnavailableError",
]


class CheckpointersError(Exception):
    """Root of every exception raised by checkpointers."""


class ConfigurationError(CheckpointersError, ValueError):
    """The configuration (URL, option, key source) is invalid or incomplete."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional extra is needed: the message names the `pip install` to run."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"module {module!r} is not installed: pip install 'checkpointers[{extra}]'"
        )
        self.extra = extra


class RecordTooLargeError(CheckpointersError, ValueError):
    """A record is larger than the configured cap (`max_record_bytes`)."""


class SerializationError(CheckpointersError, TypeError):
    """A value could not be serialized or deserialized by the framework serializer."""


class KeyUnavailableError(CheckpointersError):
    """The key a record needs is not in the key ring or its provider cannot be reached."""


class IntegrityError(CheckpointersError):
    """A record failed authentication: tampered, truncated, moved, plaintext or unknown format.

    Like Fernet's ``InvalidToken``, one class covers every cause; the message names the
    record and the key id, never the contents.
    """


class ConflictError(CheckpointersError):
    """A compare-and-set write lost a race, or an insert found the record present."""


class RecordNotFoundError(CheckpointersError, LookupError):
    """An operation needs a record that does not exist."""


class StoreUnavailableError(CheckpointersError):
    """A backend cannot be reached or failed.

    Attributes:
        may_have_applied: True when a write was sent and its outcome is unknown.
    """

    def __init__(self, message: str, *, may_have_applied: bool = False) -> None:
        super().__init__(message)
        self.may_have_applied = may_have_applied
