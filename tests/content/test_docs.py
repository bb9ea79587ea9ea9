"""The example of docs/content-and-decisions.md applies and decides as the page says."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from api.support import ApiClient, admin, apply_yaml, basic, profile_of, track

from rapport.core import NewWorkspace

DOC = Path(__file__).resolve().parents[2] / "docs" / "content-and-decisions.md"


def test_the_documented_example_applies_and_decides(client: ApiClient, workspace: NewWorkspace) -> None:
    [example] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert apply_yaml(client, workspace, example).status_code == 200
    assert track(client, workspace, "/v1/identify", {"userId": "u1", "traits": {"first_name": "Ada"}}).status_code \
        == 200
    pid = profile_of(client, workspace, user_id="u1")["id"]
    for purpose in ("analytics", "personalization"):
        granted = admin(client, workspace, "POST", "/api/v1/consent",
                        json={"profile_id": pid, "purpose": purpose, "state": "granted"})
        assert granted.status_code == 201
    assert track(client, workspace, "/v1/track", {"userId": "u1", "event": "Order Completed",
                                                  "properties": {"revenue": 250}}).status_code == 200
    secret = admin(client, workspace, "GET", "/api/v1/settings/identity-secret").json()["identity_secret"]
    proof = hmac.new(bytes.fromhex(secret), b"u1", hashlib.sha256).hexdigest()  # as documented
    response = client.post("/api/v1/decide", headers=basic(workspace.write_key),
                           json={"user_id": "u1", "user_hash": proof, "placements": ["home_hero"], "locale": "de-AT"})
    assert response.json() == {"decisions": {"home_hero": {
        "placement": "home_hero", "block": "hero_vip", "content": {"body": "<h1>Willkommen zurück, Ada</h1>"},
        "reason": {"kind": "rule"}}}}
    anonymous = client.post("/api/v1/decide", headers=basic(workspace.write_key),
                            json={"anonymous_id": "a1", "placements": ["home_hero"], "context": {"page": "sofas"}})
    # The write-key view does not tell a consent fallback from a default: whether an id consented stays private.
    assert anonymous.json()["decisions"]["home_hero"]["reason"] == {"kind": "default"}
