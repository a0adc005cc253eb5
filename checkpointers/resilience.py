"""`CircuitBreaker`: stop calling a tier that keeps failing, try it again later."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CircuitBreaker"]


@dataclass
class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_after` seconds
    one trial call is allowed (half-open): success closes it, failure re-opens it.

    Not thread-safe by design: each store instance lives on one event loop.
    """

    failure_threshold: int = 3
    reset_after: float = 5.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    failures: int = 0
    opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        """True while calls should be skipped (open and not yet due for a trial)."""
        if self.opened_at is None:
            return False
        return self.clock() - self.opened_at < self.reset_after

    def allow(self) -> bool:
        """Whether a call may be attempted now."""
        return not self.is_open

    def record_success(self) -> bool:
        """Note a success; returns True when this closes a breaker that was open."""
        was_open = self.opened_at is not None
        self.failures = 0
        self.opened_at = None
        return was_open

    def record_failure(self) -> bool:
        """Note a failure; returns True when this opens the breaker."""
        self.failures += 1
        if self.opened_at is not None:
            self.opened_at = self.clock()
            return False
        if self.failures >= self.failure_threshold:
            self.opened_at = self.clock()
            return True
        return False
