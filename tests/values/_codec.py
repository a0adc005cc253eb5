"""A JSON `ValueCodec` for the value-store tests."""

from __future__ import annotations

import json
from typing import Any

from checkpointers import SerializationError


class JsonCodec:
    """Values as JSON under the type tag ``json``."""

    def dumps(self, value: Any, what: str) -> tuple[bytes, bytes]:
        try:
            return b"json", json.dumps(value).encode()
        except TypeError as exc:
            raise SerializationError(f"{what}: cannot be serialized") from exc

    def loads(self, type_tag: bytes, data: bytes, what: str) -> Any:
        if type_tag != b"json":
            raise SerializationError(f"{what}: unknown type tag")
        return json.loads(data)
