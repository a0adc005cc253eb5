"""Metrics, spans and structured log events: `InstrumentedStore`, `Metrics`, `log_event`."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from checkpointers import ConflictError, EncryptedStore, MemoryStore, Store
from checkpointers.maintenance import rotate_keys, verify_records
from checkpointers.observability import (
    EventFormatter,
    InstrumentedStore,
    Metrics,
    log_event,
    record_failover,
)
from checkpointers.record import Record, RecordId
from checkpointers.testing import StoreContract, deterministic_key_ring

prometheus_client = pytest.importorskip("prometheus_client")


@pytest.fixture
def registry() -> Any:
    return prometheus_client.CollectorRegistry()


@pytest.fixture
def metrics(registry: Any) -> Metrics:
    return Metrics(registry)


class TestInstrumentedStore(StoreContract):
    @pytest.fixture
    async def store(self, metrics: Metrics) -> AsyncIterator[Store]:
        async with MemoryStore() as inner:
            wrapped = InstrumentedStore(inner, name="mem", metrics=metrics, tracer=None)
            await wrapped.setup()
            yield wrapped


def ops(registry: Any, operation: str, outcome: str = "ok") -> float:
    labels = {"store": "MemoryStore", "name": "mem", "operation": operation, "outcome": outcome}
    return registry.get_sample_value("checkpointers_operations_total", labels) or 0.0


class FakeSpan:
    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.attributes = dict(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


class FakeTracer:
    def __init__(self) -> None:
        self.spans: list[FakeSpan] = []

    @contextmanager
    def start_as_current_span(
        self, name: str, *, attributes: dict[str, Any], **_: Any
    ) -> Iterator[FakeSpan]:
        span = FakeSpan(name, attributes)
        self.spans.append(span)
        yield span


async def test_operations_are_counted_and_timed_per_store(metrics: Metrics, registry: Any) -> None:
    """Each call counts once under its store class, name, operation and outcome."""
    store = InstrumentedStore(MemoryStore(), name="mem", metrics=metrics, tracer=None)
    enc = EncryptedStore(store, deterministic_key_ring(), tenant="acme")
    rid = enc.record_id("t1", "", "doc", "a")
    await enc.put(rid, b"one")
    await enc.get(rid)
    await enc.get(rid)
    with pytest.raises(ConflictError):
        await enc.put(rid, b"two", expected_version=7)
    # Three gets: the two above and the key check before the first write (it reads the
    # tenant's blind-index key once).
    assert ops(registry, "put") == 1
    assert ops(registry, "get") == 3
    assert ops(registry, "put", "conflict") == 1
    assert ops(registry, "setup") == 1
    count = registry.get_sample_value(
        "checkpointers_operation_duration_seconds_count",
        {"store": "MemoryStore", "name": "mem", "operation": "get"},
    )
    assert count == 3


async def test_each_operation_opens_a_span(metrics: Metrics) -> None:
    """With a tracer, every operation is one span named after it, failures typed."""
    tracer = FakeTracer()
    store = InstrumentedStore(MemoryStore(), name="hot", metrics=metrics, tracer=tracer)
    rid = RecordId("acme", "t1", "", "doc", "a")
    await store.get(rid)
    await store.ping()
    with pytest.raises(ConflictError):
        await store.put(Record(id=rid, body=b"\x01"), expected_version=3)
    assert [s.name for s in tracer.spans] == [
        "checkpointers.get",
        "checkpointers.ping",
        "checkpointers.put",
    ]
    assert tracer.spans[0].attributes["checkpointers.name"] == "hot"
    assert tracer.spans[-1].attributes["error.type"] == "ConflictError"


async def test_only_an_owning_wrapper_closes_the_store(metrics: Metrics) -> None:
    """The wrapped store is borrowed unless `owns_store=True`."""
    inner = MemoryStore()
    await InstrumentedStore(inner, metrics=metrics, tracer=None).aclose()
    assert not inner._closed
    await InstrumentedStore(inner, metrics=metrics, tracer=None, owns_store=True).aclose()
    assert inner._closed


async def test_key_ring_and_decrypt_failures_are_exported(
    metrics: Metrics, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key-provider calls, cache lookups and decrypt failures show in the registry."""
    import checkpointers.observability as observability

    monkeypatch.setattr(observability, "_default", metrics)
    ring = deterministic_key_ring()
    metrics.watch_key_ring(ring, "main")
    store = MemoryStore()
    enc = EncryptedStore(store, ring, tenant="acme")
    rid = enc.record_id("t1", "", "doc", "a")
    await enc.put(rid, b"payload")
    raw = await store.get(rid)
    assert raw is not None
    await store.put(replace(raw, body=raw.body[:-1] + bytes([raw.body[-1] ^ 1])))
    checked, failures = await verify_records(store, ring)
    assert (checked, len(failures)) == (1, 1)

    def sample(name: str, **labels: str) -> float | None:
        value: float | None = registry.get_sample_value(name, labels)
        return value

    assert sample("checkpointers_key_provider_calls_total", ring="main", call="wrap") == 1
    assert sample("checkpointers_data_key_cache_total", ring="main", result="hit") == 1
    assert sample("checkpointers_decrypt_failures_total", reason="integrity") == 1


def test_failovers_are_counted_and_logged(
    metrics: Metrics, registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """`record_failover` counts per tier pair and logs a warning event with the error class."""
    with caplog.at_level(logging.WARNING, logger="checkpointers"):
        record_failover("hot", "durable", operation="get", error="StoreUnavailableError",
                        metrics=metrics)  # fmt: skip
    value = registry.get_sample_value(
        "checkpointers_failovers_total", {"source": "hot", "target": "durable"}
    )
    assert value == 1
    assert [getattr(r, "event", None) for r in caplog.records] == ["checkpointers.failover"]


async def test_log_events_carry_ids_and_counts_but_no_plaintext(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes, rotation and verification log their events; no record shows the canary."""
    canary = f"canary-{uuid.uuid4()}"
    old = deterministic_key_ring("old")
    store = InstrumentedStore(MemoryStore(), name="mem", metrics=metrics, tracer=None)
    with caplog.at_level(logging.DEBUG, logger="checkpointers"):
        enc = EncryptedStore(store, old, tenant="acme")
        await enc.put(enc.record_id("t1", "", "doc", "a"), canary.encode(), index={"q": canary})
        ring = deterministic_key_ring("old", "new")
        await rotate_keys(store, ring)
        await verify_records(store, ring)
        log_event("checkpointers.erase", tenant="acme", thread_id="t1", deleted=1)
    events = {getattr(r, "event", None) for r in caplog.records}
    assert {"checkpointers.write", "checkpointers.rotate", "checkpointers.verify",
            "checkpointers.erase"} <= events  # fmt: skip
    assert canary not in caplog.text
    for record in caplog.records:
        assert canary not in repr(record.__dict__)
        assert canary not in EventFormatter(as_json=True).format(record)


def test_log_event_refuses_unknown_events_reserved_names_and_bytes() -> None:
    """Typos in event names, clashing field names and bytes values raise at once."""
    with pytest.raises(ValueError, match="unknown log event"):
        log_event("checkpointers.wirte")
    with pytest.raises(ValueError, match="reserved"):
        log_event("checkpointers.erase", thread="t1")
    with pytest.raises(TypeError):
        log_event("checkpointers.write", data=b"secret")


def test_event_formatter_renders_json_and_text(caplog: pytest.LogCaptureFixture) -> None:
    """The formatter turns an event into one JSON object or one key=value line."""
    with caplog.at_level(logging.INFO, logger="checkpointers"):
        log_event("checkpointers.sweep", store="sqlite:x.db", deleted=3)
    (record,) = caplog.records
    parsed = json.loads(EventFormatter(as_json=True).format(record))
    assert parsed["event"] == "checkpointers.sweep"
    assert (parsed["store"], parsed["deleted"], parsed["level"]) == ("sqlite:x.db", 3, "info")
    assert (
        EventFormatter()
        .format(record)
        .endswith("info checkpointers.sweep store='sqlite:x.db' deleted=3")
    )
