"""Metrics, traces and structured log events.

* Metrics use `prometheus-client` when it is installed (the `cli` extra) and are no-ops
  otherwise. `InstrumentedStore` counts and times every store operation;
  `Metrics.watch_key_ring` exports a `KeyRing`'s provider calls and data-key cache;
  `Metrics.watch_tiers` exports a `TieredStore`'s `TierStats` (hot hits and misses, hit
  ratio, failovers, archive reads);
  `record_decrypt_failure` and `record_failover` count what the crypto and tiered layers
  report.
* Traces: `InstrumentedStore` opens one span per operation when `opentelemetry-api` is
  importable (or with the tracer it is given).
* Logs: `log_event` writes to the stdlib logger ``checkpointers`` with the event name and
  its fields as structured extras (``extra={"event": ..., **fields}``). Fields are routing
  ids, key ids, counts and sizes only; bytes are refused so that plaintext or key
  material cannot be logged by mistake.

Metric names::

    checkpointers_operations_total{store, name, operation, outcome}
    checkpointers_operation_duration_seconds{store, name, operation}
    checkpointers_decrypt_failures_total{reason}
    checkpointers_failovers_total{source, target}
    checkpointers_key_provider_calls_total{ring, call}        (wrap, unwrap)
    checkpointers_data_key_cache_total{ring, result}          (hit, miss)
    checkpointers_hot_reads_total{tiers, result}              (hit, miss, absent)
    checkpointers_hot_hit_ratio{tiers}                        (hits / point reads)
    checkpointers_tier_failovers_total{tiers}                 (hot tier skipped)
    checkpointers_archive_reads_total{tiers}
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from checkpointers.errors import (
    ConflictError,
    IntegrityError,
    KeyUnavailableError,
    StoreUnavailableError,
)
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores.base import Store

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    HAVE_PROMETHEUS = True
except ImportError:  # pragma: no cover - exercised without the cli extra
    HAVE_PROMETHEUS = False

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from checkpointers.crypto.keyring import KeyRing

__all__ = [
    "EVENTS",
    "HAVE_PROMETHEUS",
    "EventFormatter",
    "InstrumentedStore",
    "Metrics",
    "default_metrics",
    "log_event",
    "record_decrypt_failure",
    "record_failover",
]

T = TypeVar("T")

logger = logging.getLogger("checkpointers")

#: The event names `log_event` accepts: one per kind of thing operators look for.
EVENTS = frozenset(
    {
        "checkpointers.archive",
        "checkpointers.erase",
        "checkpointers.failover",
        "checkpointers.restore",
        "checkpointers.retire",
        "checkpointers.rotate",
        "checkpointers.sweep",
        "checkpointers.verify",
        "checkpointers.write",
    }
)

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "asctime",
    "event",
    "event_fields",
    "message",
}
_FIELD_TYPES = (str, int, float, bool, type(None))

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


# -- structured logs -------------------------------------------------------------------


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` on the ``checkpointers`` logger with `fields` as structured extras.

    Args:
        event: one of `EVENTS`.
        level: logging level (erasure is logged at WARNING by its callers).
        fields: routing ids, key ids, counts: str, int, float, bool or None only.

    Raises:
        ValueError: unknown event name or a field name reserved by `logging`.
        TypeError: a field value of another type (bytes could be plaintext).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown log event {event!r}")
    for name, value in fields.items():
        if name in _RESERVED:
            raise ValueError(f"log field name {name!r} is reserved by logging")
        if not isinstance(value, _FIELD_TYPES):
            raise TypeError(f"log field {name!r} must be str, int, float, bool or None")
    if not logger.isEnabledFor(level):
        return
    rendered = " ".join(f"{name}={value!r}" for name, value in fields.items())
    logger.log(
        level,
        "%s %s",
        event,
        rendered,
        extra={"event": event, "event_fields": dict(fields), **fields},
    )


class EventFormatter(logging.Formatter):
    """Formats `log_event` records as one JSON object per line, or as `key=value` text."""

    def __init__(self, *, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        fields: dict[str, Any] = dict(getattr(record, "event_fields", {}))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"
        if event is None:
            event, fields = record.getMessage(), {}
        if self.as_json:
            return json.dumps(
                {"ts": stamp, "level": record.levelname.lower(), "event": event, **fields},
                sort_keys=True,
            )
        rendered = "".join(f" {name}={value!r}" for name, value in fields.items())
        return f"{stamp} {record.levelname.lower()} {event}{rendered}"


# -- metrics -----------------------------------------------------------------------------


class _KeyRingCollector:
    """Reads the counters of watched key rings at scrape time."""

    def __init__(self) -> None:
        self._rings: weakref.WeakValueDictionary[str, KeyRing] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def watch(self, ring: KeyRing, name: str) -> None:
        with self._lock:
            self._rings[name] = ring

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "checkpointers_key_provider_calls",
            "Calls to key providers (wrap and unwrap of data keys).",
            labels=["ring", "call"],
        )
        cache = CounterMetricFamily(
            "checkpointers_data_key_cache",
            "Lookups in the unwrapped data-key cache, by result.",
            labels=["ring", "result"],
        )
        with self._lock:
            rings = list(self._rings.items())
        for name, ring in rings:
            stats = ring.stats
            calls.add_metric([name, "wrap"], stats.wraps)
            calls.add_metric([name, "unwrap"], stats.unwraps)
            cache.add_metric([name, "hit"], stats.cache_hits)
            cache.add_metric([name, "miss"], stats.cache_misses)
        yield calls
        yield cache


class _TierCounters(Protocol):
    """What the collector reads of a `TieredStore`'s `TierStats` (a protocol, so that this
    module does not import the tiered package, which imports it)."""

    hot_hits: int
    hot_misses: int
    absent_reads: int
    failovers: int
    archive_reads: int

    @property
    def hit_ratio(self) -> float | None: ...


class _Watched(Protocol):
    @property
    def stats(self) -> _TierCounters: ...


class _TiersCollector:
    """Reads the `TierStats` of watched tiered stores at scrape time."""

    def __init__(self) -> None:
        self._tiers: weakref.WeakValueDictionary[str, _Watched] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def watch(self, tiered: _Watched, name: str) -> None:
        with self._lock:
            self._tiers[name] = tiered

    def collect(self) -> Iterator[Metric]:
        reads = CounterMetricFamily(
            "checkpointers_hot_reads",
            "Point reads of a tiered store: served hot (hit), by a colder tier (miss), "
            "or by none (absent).",
            labels=["tiers", "result"],
        )
        ratio = GaugeMetricFamily(
            "checkpointers_hot_hit_ratio",
            "Share of a tiered store's point reads served by the hot tier.",
            labels=["tiers"],
        )
        failovers = CounterMetricFamily(
            "checkpointers_tier_failovers",
            "Times a tiered store's hot tier was found down and skipped.",
            labels=["tiers"],
        )
        archive = CounterMetricFamily(
            "checkpointers_archive_reads",
            "Reads of a tiered store that fell through to the archive.",
            labels=["tiers"],
        )
        with self._lock:
            watched = list(self._tiers.items())
        for name, tiered in watched:
            stats = tiered.stats
            reads.add_metric([name, "hit"], stats.hot_hits)
            reads.add_metric([name, "miss"], stats.hot_misses)
            reads.add_metric([name, "absent"], stats.absent_reads)
            if stats.hit_ratio is not None:
                ratio.add_metric([name], stats.hit_ratio)
            failovers.add_metric([name], stats.failovers)
            archive.add_metric([name], stats.archive_reads)
        yield reads
        yield ratio
        yield failovers
        yield archive


class Metrics:
    """The package's Prometheus metrics, registered in one registry.

    Every method is a no-op when prometheus-client is not installed.

    Args:
        registry: where to register (default: the process-wide registry; use a fresh
            `CollectorRegistry` in tests).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.enabled = HAVE_PROMETHEUS
        if not HAVE_PROMETHEUS:
            return
        self.registry = REGISTRY if registry is None else registry
        self.operations = Counter(
            "checkpointers_operations",
            "Store operations by store class, store name, operation and outcome.",
            ["store", "name", "operation", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "checkpointers_operation_duration_seconds",
            "Latency of store operations in seconds.",
            ["store", "name", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decrypt_failures = Counter(
            "checkpointers_decrypt_failures",
            "Records that failed to decrypt, by reason (integrity, key_unavailable).",
            ["reason"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "checkpointers_failovers",
            "Operations that fell back from one tier to another.",
            ["source", "target"],
            registry=self.registry,
        )
        self._rings = _KeyRingCollector()
        self.registry.register(self._rings)
        self._tiers = _TiersCollector()
        self.registry.register(self._tiers)

    def observe(self, store: str, name: str, operation: str, outcome: str, seconds: float) -> None:
        """Count one store operation and record its latency."""
        if not self.enabled:
            return
        self.operations.labels(store, name, operation, outcome).inc()
        self.latency.labels(store, name, operation).observe(seconds)

    def decrypt_failure(self, reason: str) -> None:
        """Count a record that failed to decrypt."""
        if self.enabled:
            self.decrypt_failures.labels(reason).inc()

    def failover(self, source: str, target: str) -> None:
        """Count a fallback from tier `source` to tier `target`."""
        if self.enabled:
            self.failovers.labels(source, target).inc()

    def watch_key_ring(self, ring: KeyRing, name: str = "default") -> None:
        """Export `ring.stats` (provider calls, cache hits and misses) under `name`.

        The ring is held weakly: a ring that is garbage-collected stops being exported.
        """
        if self.enabled:
            self._rings.watch(ring, name)

    def watch_tiers(self, tiered: _Watched, name: str = "default") -> None:
        """Export the `stats` of a `TieredStore` (hot hits and misses, hit ratio,
        failovers, archive reads) under the label ``tiers=name``.

        The store is held weakly; watching another store under the same name replaces it.
        """
        if self.enabled:
            self._tiers.watch(tiered, name)


_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide `Metrics`, registered in prometheus-client's default registry."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def record_decrypt_failure(error: BaseException, metrics: Metrics | None = None) -> None:
    """Count a decryption failure by its class (integrity or key_unavailable)."""
    if isinstance(error, IntegrityError):
        reason = "integrity"
    elif isinstance(error, KeyUnavailableError):
        reason = "key_unavailable"
    else:
        reason = "other"
    (metrics or default_metrics()).decrypt_failure(reason)


def record_failover(
    source: str, target: str, *, operation: str, error: str = "", metrics: Metrics | None = None
) -> None:
    """Count and log a fallback from tier `source` to tier `target` (for `TieredStore`).

    `error` is an exception class name, never its message.
    """
    (metrics or default_metrics()).failover(source, target)
    log_event(
        "checkpointers.failover",
        level=logging.WARNING,
        source=source,
        target=target,
        operation=operation,
        error=error,
    )


def _outcome(error: BaseException) -> str:
    if isinstance(error, ConflictError):
        return "conflict"
    if isinstance(error, StoreUnavailableError):
        return "unavailable"
    if isinstance(error, Exception):
        return "error"
    return "cancelled"


_AUTO: Any = object()


def _otel_tracer() -> Any:
    try:
        trace = importlib.import_module("opentelemetry.trace")
    except ImportError:
        return None
    return trace.get_tracer("checkpointers")


# -- the store wrapper -------------------------------------------------------------------


class InstrumentedStore(Store):
    """A `Store` that delegates every operation and records metrics, spans and write logs.

    Args:
        store: the store to wrap. Borrowed: closed by `aclose()` only with `owns_store`.
        name: a label for this store in metrics and logs (a tier name, "hot"...).
        metrics: where to count (default: `default_metrics()`).
        tracer: an OpenTelemetry tracer; by default one from `opentelemetry-api` when it
            is importable; None disables spans.
        owns_store: close `store` when this wrapper is closed.
    """

    def __init__(
        self,
        store: Store,
        *,
        name: str | None = None,
        metrics: Metrics | None = None,
        tracer: Any = _AUTO,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.store_class = type(store).__name__
        self.name = name if name is not None else self.store_class
        self.metrics = metrics if metrics is not None else default_metrics()
        self.tracer = _otel_tracer() if tracer is _AUTO else tracer
        self._owns_store = owns_store

    @contextlib.contextmanager
    def _span(self, operation: str) -> Iterator[Any]:
        if self.tracer is None:
            yield None
            return
        with self.tracer.start_as_current_span(
            f"checkpointers.{operation}",
            attributes={"checkpointers.store": self.store_class, "checkpointers.name": self.name},
            record_exception=False,
        ) as span:
            yield span

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        with self._span(operation) as span:
            start = time.perf_counter()
            try:
                result = await call()
            except BaseException as exc:
                outcome = _outcome(exc)
                self.metrics.observe(
                    self.store_class, self.name, operation, outcome, time.perf_counter() - start
                )
                if span is not None:
                    span.set_attribute("error.type", type(exc).__name__)
                raise
            self.metrics.observe(
                self.store_class, self.name, operation, "ok", time.perf_counter() - start
            )
            return result

    def _log_write(self, operation: str, records: Sequence[Record]) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            kinds = sorted({r.id.kind for r in records})
            log_event(
                "checkpointers.write",
                level=logging.DEBUG,
                store=self.name,
                operation=operation,
                records=len(records),
                kinds=",".join(kinds),
            )

    # -- protocol ------------------------------------------------------------------------

    async def setup(self) -> None:
        await self._call("setup", self.store.setup)

    async def get(self, record_id: RecordId) -> Record | None:
        return await self._call("get", lambda: self.store.get(record_id))

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        version = await self._call(
            "put", lambda: self.store.put(record, expected_version=expected_version)
        )
        self._log_write("put", [record])
        return version

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        versions = await self._call(
            "put_many", lambda: self.store.put_many(records, if_absent=if_absent)
        )
        self._log_write("put_many", records)
        return versions

    async def replicate(self, records: Sequence[Record]) -> None:
        await self._call("replicate", lambda: self.store.replicate(records))
        self._log_write("replicate", records)

    async def find(self, query: Query) -> list[Record]:
        return await self._call("find", lambda: self.store.find(query))

    async def latest(self, query: Query) -> Record | None:
        return await self._call("latest", lambda: self.store.latest(query))

    async def claim(self, claim: Claim) -> Record | None:
        return await self._call("claim", lambda: self.store.claim(claim))

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        return await self._call("delete", lambda: self.store.delete(record_ids))

    async def delete_thread(self, tenant: str, thread: str) -> int:
        return await self._call("delete_thread", lambda: self.store.delete_thread(tenant, thread))

    async def delete_tenant(self, tenant: str) -> int:
        return await self._call("delete_tenant", lambda: self.store.delete_tenant(tenant))

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        return await self._call(
            "threads", lambda: self.store.threads(tenant, after=after, limit=limit)
        )

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        return await self._call("scan", lambda: self.store.scan(after, limit=limit))

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        return await self._call("sweep", lambda: self.store.sweep(now=now, limit=limit))

    async def ping(self) -> None:
        await self._call("ping", self.store.ping)

    async def is_set_up(self) -> bool:
        return await self._call("is_set_up", self.store.is_set_up)

    async def _close(self) -> None:
        if self._owns_store:
            await self.store.aclose()

    def __repr__(self) -> str:
        return f"InstrumentedStore({self.store!r}, name={self.name!r})"
