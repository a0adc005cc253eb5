"""Timing helpers: percentiles, per-method latency probes, payload text."""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

WORDS = [
    *("the", "agent", "called", "tool", "search", "result", "user", "asked", "about"),
    *("order", "refund", "invoice", "shipping", "address", "weather", "report"),
    *("summary", "draft", "email", "calendar", "meeting", "notes"),
]


def chat_text(size: int, seed: int) -> str:
    """Chat-like text of exactly `size` characters (compressible as real messages are)."""
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def percentile(samples: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest-rank; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples: list[float]) -> dict[str, float | int | None]:
    """p50/p99 in milliseconds and the count of `samples` (seconds)."""
    p50 = percentile(samples, 50)
    p99 = percentile(samples, 99)
    return {
        "n": len(samples),
        "p50_ms": None if p50 is None else p50 * 1e3,
        "p99_ms": None if p99 is None else p99 * 1e3,
    }


class Probe:
    """Wraps async methods of one object to record how long each call takes."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def attach(self, obj: Any, *names: str) -> None:
        for name in names:
            original: Callable[..., Awaitable[Any]] = getattr(obj, name)
            setattr(obj, name, self._wrap(name, original))

    def _wrap(
        self, name: str, original: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        bucket = self.samples[name]

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                bucket.append(time.perf_counter() - start)

        return timed


def round_floats(value: Any, digits: int = 4) -> Any:
    """JSON-friendly copy with floats rounded."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v, digits) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(round_floats(value), indent=2, sort_keys=False, default=str)
