"""Azure SDK errors to checkpointers errors: the `AzureBlobStore` boundary (private).

Every request to the service runs inside `boundary`, which classifies what the SDK raises
by HTTP status and the service's error code (never by message text) and chains the
original with ``from``:

* a protected blob (immutability policy, legal hold, lease) is a `ConflictError`: the
  record's state forbids the change and retrying will not help;
* any other response error, or a request that got no answer, is a
  `StoreUnavailableError` that says whether a write may have been applied.

`Lost` (a conditional request lost its race) and checkpointers errors pass through; the
primitives use `is_lost_race` and `is_absent` to turn expected answers into results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from checkpointers.errors import CheckpointersError, ConflictError, StoreUnavailableError

__all__ = ["Lost", "boundary", "is_absent", "is_lost_race"]

# Refusals by the service that retrying cannot fix: the blob is protected.
_PROTECTED = frozenset({
    "BlobImmutableDueToPolicy",
    "BlobImmutableDueToLegalHold",
    "LeaseIdMissing",
    "LeaseIdMismatchWithBlobOperation",
})  # fmt: skip


class Lost(Exception):
    """A conditional request lost its race (412 ConditionNotMet or 409 BlobAlreadyExists)."""


def _error_code(exc: HttpResponseError) -> str:
    # Set by azure-storage from the x-ms-error-code header (a StorageErrorCode or a str).
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def is_lost_race(exc: HttpResponseError) -> bool:
    code = _error_code(exc)
    return (exc.status_code == 412 and code in ("ConditionNotMet", "")) or (
        exc.status_code == 409 and code == "BlobAlreadyExists"
    )


def is_absent(exc: HttpResponseError) -> bool:
    return exc.status_code == 404 and _error_code(exc) in ("BlobNotFound", "")


@contextlib.contextmanager
def boundary(container_name: str, what: str, *, write: bool) -> Iterator[None]:
    """Translate Azure SDK errors into checkpointers errors (by status and code)."""
    try:
        yield
    except (CheckpointersError, Lost):
        raise
    except HttpResponseError as exc:
        code = _error_code(exc)
        if code in _PROTECTED:
            raise ConflictError(
                f"azure blob container {container_name!r}: {what} refused: the blob "
                f"is protected ({getattr(exc, 'status_code', None)} {code}: immutability "
                "policy, legal hold or lease)"
            ) from exc
        status: int | None = getattr(exc, "status_code", None)
        # No status: raised before a response (e.g. by the credential): not applied.
        may = write and status is not None and (status >= 500 or status == 408)
        raise StoreUnavailableError(
            f"azure blob container {container_name!r}: {what} failed "
            f"({status} {code or type(exc).__name__})",
            may_have_applied=may,
        ) from exc
    except AzureError as exc:
        # Not sent (connection refused, DNS, credential): nothing applied. Sent without
        # an answer (timeout, reset): a write may have been applied.
        sent = isinstance(exc, ServiceResponseError) and not isinstance(exc, ServiceRequestError)
        raise StoreUnavailableError(
            f"azure blob container {container_name!r}: {what} failed ({type(exc).__name__})",
            may_have_applied=write and sent,
        ) from exc
