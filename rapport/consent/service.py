"""Recording consent through the admin API (and the CLI): one ledger entry per call, audited."""

from __future__ import annotations

from typing import Any

from rapport.clock import Clock, parse_iso
from rapport.consent.model import parse_legal_basis, parse_state
from rapport.errors import NotFoundError, ValidationError
from rapport.identity.normalize import normalize
from rapport.identity.service import PERSONAL_TYPES
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

_FIELDS = (
    "identifiers",
    "profile_id",
    "purpose",
    "state",
    "source",
    "policy_version",
    "legal_basis",
    "expires_at",
    "effective_at",
    "proof",
)


def _time(body: JsonObject, field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"'{field}' must be an ISO-8601 timestamp", code="invalid_consent")
    try:
        return parse_iso(value)
    except ValueError:
        raise ValidationError(f"'{field}' is not an ISO-8601 timestamp: {value!r}", code="invalid_consent") from None


def _profile(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, body: JsonObject) -> str:
    if isinstance(body.get("profile_id"), str):
        root = identity_sql.live_root(conn, rt.id, body["profile_id"])
        if root is None:
            raise NotFoundError(f"no profile {body['profile_id']!r}", code="profile_not_found")
        return root
    idents = body.get("identifiers")
    if not isinstance(idents, dict) or not idents:
        raise ValidationError("give 'identifiers' (e.g. {\"user_id\": \"u1\"}) or 'profile_id'", code="invalid_consent")
    for id_type, raw in idents.items():
        ident = normalize(str(id_type), raw)
        if ident is None:
            raise ValidationError(f"{raw!r} is not a valid {id_type}", code="invalid_identifier")
        key = ident.value
        if ident.type in PERSONAL_TYPES:
            key = keyring.blind_index(rt.id, rt.wrapped_key, ident.type, ident.value)
        owner = identity_sql.owners(conn, rt.id, [(ident.type, key)]).get((ident.type, key))
        if owner is not None:
            return owner
    raise NotFoundError("no profile has these identifiers", code="profile_not_found")


def record(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock, body: Any, actor: str) -> JsonObject:
    """Append one consent entry from an API body (DESIGN 4.2); returns the stored entry's summary."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", code="invalid_consent")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(_FIELDS)}", code="invalid_consent"
        )
    purpose = rt.catalog.get(body.get("purpose"))  # type: ignore[arg-type]
    state = parse_state(body.get("state"))
    basis = parse_legal_basis(body["legal_basis"]) if body.get("legal_basis") else purpose.legal_basis
    source = body.get("source") or "api"
    if not isinstance(source, str):
        raise ValidationError("'source' must be a string", code="invalid_consent")
    policy = body.get("policy_version")
    if policy is not None and not isinstance(policy, str):
        raise ValidationError("'policy_version' must be a string", code="invalid_consent")
    proof = body.get("proof")
    if proof is not None and not isinstance(proof, str):
        raise ValidationError("'proof' must be a string (a hash, never a raw IP)", code="invalid_consent")
    now = clock.now_ms()
    effective = _time(body, "effective_at") or now
    expires = _time(body, "expires_at")
    if expires is None and state == "granted" and purpose.default_expiry_ms is not None:
        expires = effective + purpose.default_expiry_ms
    profile_id = _profile(conn, rt, keyring, body)
    entry_id = clock.new_id("cns")
    consent_sql.append(
        conn,
        rt.id,
        (
            entry_id,
            profile_id,
            profile_id,
            purpose.name,
            state,
            basis,
            source,
            policy,
            proof,
            now,
            effective,
            expires,
            None,
        ),
    )
    ws_sql.audit(conn, rt.id, actor, f"consent.{state}", profile_id, {"purpose": purpose.name, "entry": entry_id}, now)
    return {"id": entry_id, "profile_id": profile_id, "purpose": purpose.name, "state": state, "legal_basis": basis}
