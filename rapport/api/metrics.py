"""Prometheus metrics: ingest counts and latency, dedupe, invalid and quarantine counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rapport.errors import RapportError
from rapport.ingestion.model import IngestResult

REGISTRY = CollectorRegistry(auto_describe=True)
EVENTS = Counter("rapport_ingest_events", "Events stored", ["endpoint"], registry=REGISTRY)
DUPLICATES = Counter("rapport_ingest_duplicates", "Messages dropped as duplicates (messageId)", registry=REGISTRY)
INVALID = Counter("rapport_ingest_invalid", "Messages refused as invalid", ["endpoint"], registry=REGISTRY)
QUARANTINED = Counter("rapport_ingest_quarantined", "Messages quarantined by a tracking plan", registry=REGISTRY)
RESTRICTED = Counter("rapport_ingest_restricted", "Events kept minimized for lack of consent", registry=REGISTRY)
REJECTED = Counter("rapport_ingest_rejected_requests", "Requests refused", ["endpoint", "code"], registry=REGISTRY)
LATENCY = Histogram(
    "rapport_ingest_seconds", "Time from request to durable acknowledgement", ["endpoint"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BACKLOG = Gauge("rapport_writer_backlog", "Events waiting for the writer", registry=REGISTRY)


def record_ingest(endpoint: str, result: IngestResult, invalid: int, seconds: float) -> None:
    EVENTS.labels(endpoint).inc(result.accepted)
    if result.duplicates:
        DUPLICATES.inc(result.duplicates)
    if invalid:
        INVALID.labels(endpoint).inc(invalid)
    if result.quarantined:
        QUARANTINED.inc(result.quarantined)
    if result.restricted:
        RESTRICTED.inc(result.restricted)
    LATENCY.labels(endpoint).observe(seconds)


def record_rejection(endpoint: str, exc: BaseException) -> None:
    code = exc.code if isinstance(exc, RapportError) else "internal_error"
    REJECTED.labels(endpoint, code).inc()


def render(backlog: int) -> bytes:
    BACKLOG.set(backlog)
    return generate_latest(REGISTRY)
