"""Models through the admin API: apply, train, catalog, score; scopes; errors in the one error shape."""

from __future__ import annotations

from typing import Any

from api.support import NOW, ApiClient, admin, apply_yaml, assert_error
from rapport.clock import FrozenClock
from rapport.core import NewWorkspace, Rapport

MODEL = """
kind: Model
name: reorder
target: {event: Order Completed, within: 30d}
features: [orders_90d, days_since_last_order]
write_to: reorder_score
---
kind: Model
name: untrained
target: {event: Order Completed, within: 7d}
features: [orders_30d]
"""


def shop(rapport: Rapport, clock: FrozenClock) -> NewWorkspace:
    from models.conftest import build_shop

    built = build_shop(rapport, clock, people=200, seed=3)
    clock.set(NOW)
    return NewWorkspace(built.ws, "", rapport.create_token(built.ws, "admin", "test", "test"))


def test_train_list_show_and_score(rapport: Rapport, client: ApiClient, clock: FrozenClock) -> None:
    ws = shop(rapport, clock)
    assert apply_yaml(client, ws, MODEL).status_code == 200
    listing = admin(client, ws, "GET", "/api/v1/models").json()["models"]
    assert [(m["name"], m["versions"], m["latest"]) for m in listing] == [("reorder", 0, None), ("untrained", 0, None)]

    trained = admin(client, ws, "POST", "/api/v1/models/reorder/train")
    assert trained.status_code == 200, trained.text
    body: dict[str, Any] = trained.json()
    assert body["version"] == 1 and body["scored"] == 201 and body["metrics"]["auc"] > 0.6
    assert set(body["metrics"]) >= {"auc", "ece", "brier", "base_rate", "n"}

    listing = admin(client, ws, "GET", "/api/v1/models").json()["models"]
    assert listing[0]["versions"] == 1 and listing[0]["latest"]["metrics"] == body["metrics"]
    one = admin(client, ws, "GET", "/api/v1/models/reorder").json()
    [version] = one["versions"]
    assert version["version"] == 1 and version["cutoff"] == "2026-01-31T10:00:00.000Z"
    assert version["parameters"]["features"] == ["orders_90d", "days_since_last_order"]
    assert version["scored"] == 201

    scored = admin(client, ws, "POST", "/api/v1/models/reorder/score").json()
    assert scored == {"name": "reorder", "version": 1, "write_to": "reorder_score", "scored": 201}
    preview = admin(client, ws, "POST", "/api/v1/segments/preview", json={"rule": "computed.reorder_score > 0.5"})
    assert preview.status_code == 200, preview.text


def test_errors_and_scopes(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, MODEL).status_code == 200
    assert_error(admin(client, workspace, "GET", "/api/v1/models/nope"), 404, "model_not_found")
    assert_error(admin(client, workspace, "POST", "/api/v1/models/untrained/score"), 404, "model_not_trained")
    assert_error(admin(client, workspace, "POST", "/api/v1/models/reorder/train"), 400, "insufficient_data")
    viewer = rapport.create_token(workspace.workspace_id, "viewer", "v", "test")
    assert_error(admin(client, workspace, "GET", "/api/v1/models", token=viewer), 403, "forbidden")
    marketer = rapport.create_token(workspace.workspace_id, "marketer", "m", "test")
    assert admin(client, workspace, "GET", "/api/v1/models", token=marketer).status_code == 200
    assert_error(admin(client, workspace, "POST", "/api/v1/models/reorder/train", token=marketer), 403, "forbidden")


def test_an_unknown_feature_is_refused_at_apply(client: ApiClient, workspace: NewWorkspace) -> None:
    body = assert_error(apply_yaml(client, workspace, MODEL.replace("orders_30d]", "orders_3d]")), 400,
                        "invalid_resource")
    assert any("did you mean 'orders_30d'" in d["message"] and d["field"] == "features[0]" for d in body["details"])
