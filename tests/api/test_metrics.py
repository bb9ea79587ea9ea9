"""Prometheus /metrics: the ingest counters and the latency histogram count exactly what a batch did."""

from __future__ import annotations

import math
import time
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from api.support import ApiClient, apply_yaml, track
from rapport.core import NewWorkspace

PLAN = """
kind: TrackingPlan
name: shop
mode: quarantine
events:
  Order Completed:
    schema: {type: object, properties: {revenue: {type: number}}}
"""
CONSENT = {"consent": {"categoryPreferences": {"Analytics": True}}}

Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(client: ApiClient) -> dict[Sample, float]:
    """Every sample of /metrics by name and labels (the registry is the process's: compare two scrapes)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def delta(before: dict[Sample, float], after: dict[Sample, float], name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_counters_and_latency_count_one_batch_exactly(client: ApiClient, workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, PLAN).status_code == 200
    earlier = {"userId": "u1", "event": "Viewed", "messageId": "earlier", "context": CONSENT}
    assert track(client, workspace, "/v1/track", earlier).status_code == 200
    batch = [
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "new-1", "context": CONSENT},
        {"type": "track", "userId": "u2", "event": "Viewed", "messageId": "new-2"},  # no consent: minimized
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "new-1", "context": CONSENT},  # repeated
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "earlier", "context": CONSENT},  # stored
        {"type": "track", "event": "Viewed", "messageId": "no-id"},  # invalid: who?
        {"type": "track", "userId": "u1", "messageId": "no-event"},  # invalid: what?
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "bad-order",
         "properties": {"revenue": "lots"}, "context": CONSENT},  # quarantined
    ]
    before = scrape(client)
    started = time.perf_counter()
    response = track(client, workspace, "/v1/batch", {"batch": batch})
    elapsed = time.perf_counter() - started
    after = scrape(client)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["index"] for e in body["errors"]] == [4, 5] and body["quarantined"] == 1
    counted = {
        "events": delta(before, after, "rapport_ingest_events_total", endpoint="batch"),
        "duplicates": delta(before, after, "rapport_ingest_duplicates_total"),
        "invalid": delta(before, after, "rapport_ingest_invalid_total", endpoint="batch"),
        "quarantined": delta(before, after, "rapport_ingest_quarantined_total"),
        "restricted": delta(before, after, "rapport_ingest_restricted_total"),
    }
    assert counted == {"events": 2, "duplicates": 2, "invalid": 2, "quarantined": 1, "restricted": 1}

    assert delta(before, after, "rapport_ingest_seconds_count", endpoint="batch") == 1
    assert delta(before, after, "rapport_ingest_seconds_count", endpoint="track") == 0
    assert 0 < delta(before, after, "rapport_ingest_seconds_sum", endpoint="batch") <= elapsed
    buckets = sorted((float(dict(labels)["le"]), after[(name, labels)] - before.get((name, labels), 0.0))
                     for name, labels in after
                     if name == "rapport_ingest_seconds_bucket" and dict(labels)["endpoint"] == "batch")
    assert buckets[-1] == (math.inf, 1)
    steps = [n for _, n in buckets]
    assert steps == sorted(steps) and set(steps) <= {0, 1}, "one observation: 0 below its bucket, 1 from it on"

    changed = Counter(name for (name, labels), value in after.items()
                      if name.startswith("rapport_ingest_") and name.endswith(("_total", "_count"))
                      and value != before.get((name, labels), 0.0))
    assert set(changed) == {"rapport_ingest_events_total", "rapport_ingest_duplicates_total",
                            "rapport_ingest_invalid_total", "rapport_ingest_quarantined_total",
                            "rapport_ingest_restricted_total", "rapport_ingest_seconds_count"}
    assert all(n == 1 for n in changed.values()), changed


def test_refused_requests_are_counted_by_code(client: ApiClient, workspace: NewWorkspace) -> None:
    before = scrape(client)
    assert track(client, workspace, "/v1/batch", {"batch": []}, Authorization="Basic bm9wZTo=").status_code == 401
    assert track(client, workspace, "/v1/batch", {"batch": "nope"}).status_code == 400
    after = scrape(client)
    assert delta(before, after, "rapport_ingest_rejected_requests_total", endpoint="batch",
                 code="invalid_credentials") == 1
    assert delta(before, after, "rapport_ingest_rejected_requests_total", endpoint="batch", code="invalid_body") == 1
    assert delta(before, after, "rapport_ingest_seconds_count", endpoint="batch") == 0
