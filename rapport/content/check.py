"""What content blocks, placements and templates say about the rest of the workspace, checked at apply.

Placements name blocks that exist and are made for the placement's channel, models that exist, and a known
consent purpose that needs consent (``necessary`` and purposes on another legal basis are allowed for everyone,
so a placement on one would personalize without consent); rules of placements and blocks read computed traits,
purposes and segments that exist (and the request's ``context.*``, never ``event.*``); templates and blocks
print no personal field their channel may not print (``rapport.content.pii``). Every problem is one detail of
the one error shape: document, kind, name, field, message, expected (and for the PII lint the field, the channel
and the template line).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from rapport.consent.model import NECESSARY
from rapport.content.pii import describe, print_problems
from rapport.errors import ValidationError
from rapport.resources.builtin.placement import DEFAULT_PURPOSE
from rapport.resources.fields import did_you_mean
from rapport.resources.kinds import known_kinds
from rapport.rules import Node, Path, parse, paths
from rapport.segments.check import Problem, located, problems
from rapport.storage.base import Conn
from rapport.storage.sql import workspaces as ws_sql
from rapport.templates.render import Parts
from rapport.types import JsonObject, WorkspaceId
from rapport.workspaces.model import WorkspaceSettings

if TYPE_CHECKING:
    from rapport.resources.model import Resource
    from rapport.workspaces.runtime import WorkspaceRuntime

RULE_ROOTS = ("computed", "consent", "context", "traits")
KINDS = ("ContentBlock", "Placement", "Template")


def rule_error(text: str, rt: WorkspaceRuntime) -> str | None:
    """Why ``text`` is not a rule a placement or block can run in the workspace, or ``None``."""
    try:
        rule = parse(text)
    except ValidationError as exc:
        return exc.message
    found = _problems(rule, rt)
    return located(found[0], text).message if found else None


def _problems(rule: Node, rt: WorkspaceRuntime) -> list[Problem]:
    foreign = {(p.span.start, p.span.end): p for p in paths(rule) if p.root in ("context", "event")}
    kept = [p for p in problems(rule, rt, set(rt.segments)) if (p.span.start, p.span.end) not in foreign]
    kept += [_event_path(p) for p in foreign.values() if p.root == "event"]
    return sorted(kept, key=lambda p: p.span.start)


def _event_path(path: Path) -> Problem:
    text = ".".join((path.root, *path.parts))
    return Problem(f"a content rule cannot read {text}: a decision has no triggering event; expected a path starting "
                   f"with one of {', '.join(repr(r) for r in RULE_ROOTS)}, or an event function such as "
                   'count("Order Completed")', path.span)


def block_parts(spec: Mapping[str, object]) -> dict[str, Parts]:
    """A ContentBlock's Liquid parts by the field that holds them: ``""`` for its own, ``locales.<tag>``."""
    out: dict[str, Parts] = {"": {p: str(spec[p]) for p in ("title", "body") if isinstance(spec.get(p), str)}}
    locales = spec.get("locales")
    if isinstance(locales, dict):
        for tag, doc in locales.items():
            if isinstance(doc, dict):
                out[f"locales.{tag}"] = {p: str(doc[p]) for p in ("title", "body") if isinstance(doc.get(p), str)}
    return out


def content_problems(conn: Conn, ws: WorkspaceId, final: Mapping[tuple[str, str], Resource],
                     desired: Sequence[Resource]) -> list[JsonObject]:
    """Every problem of the final state's blocks, placements and templates (see the module docstring)."""
    if not any(kind in KINDS for kind, _ in final):
        return []
    row = ws_sql.workspace(conn, ws)
    if row is None:
        return []
    import orjson

    from rapport.workspaces.runtime import build_runtime

    settings = WorkspaceSettings.from_json(orjson.loads(row[4]))
    try:
        rt: WorkspaceRuntime | None = build_runtime(row, -1, [(r.kind, r.spec, 0) for r in final.values()])
    except ValidationError:
        rt = None
    position = {(r.kind, r.name): i + 1 for i, r in enumerate(desired)}
    details: list[JsonObject] = []
    for (kind, name), resource in sorted(final.items()):
        base: JsonObject = {"document": position.get((kind, name), 0), "kind": kind, "name": name}
        for field, message, expected, extra in _problems_of(kind, resource.spec, final, settings, rt):
            details.append({**base, "field": field, "message": message, "expected": expected, **extra})
    return details


Found = tuple[str, str, str, JsonObject]


def _problems_of(kind: str, spec: JsonObject, final: Mapping[tuple[str, str], Resource],
                 settings: WorkspaceSettings, rt: WorkspaceRuntime | None) -> Iterator[Found]:
    if kind == "Template":
        yield from _template(spec, final, settings)
    elif kind == "ContentBlock":
        for field, parts in block_parts(spec).items():
            yield from _pii(parts, str(spec.get("channel")), settings, field)
        if rt is not None and isinstance(spec.get("when"), str):
            yield from _rule("when", str(spec["when"]), rt)
    elif kind == "Placement":
        yield from _placement(spec, final, rt)


def _template(spec: JsonObject, final: Mapping[tuple[str, str], Resource],
              settings: WorkspaceSettings) -> Iterator[Found]:
    from rapport.resources.builtin.template import MESSAGE_TYPE_OF_CHANNEL, PARTS

    channel = final.get(("Channel", str(spec.get("channel"))))
    message_type = MESSAGE_TYPE_OF_CHANNEL.get(str(channel.spec.get("type"))) if channel is not None else None
    if message_type is None:
        return
    parts: Parts = {p: spec[p] for p in PARTS if spec.get(p) is not None}
    yield from _pii(parts, message_type, settings, "")


def _pii(parts: Parts, channel: str, settings: WorkspaceSettings, prefix: str) -> Iterator[Found]:
    for problem in print_problems(parts, channel, settings.pii_fields, settings.pii_print):
        field = f"{prefix}.{problem.part}" if prefix else problem.part
        yield (field, describe(problem, channel, settings.pii_print),
               f"no personal field that channel {channel!r} may not print",
               {"pii_field": problem.field, "channel": channel, "template_line": problem.line,
                "template_col": problem.col})


def _rule(field: str, text: str, rt: WorkspaceRuntime) -> Iterator[Found]:
    problem = rule_error(text, rt)
    if problem is not None:
        yield field, f"invalid rule in {field}: {problem}", "a rule over known fields", {}


def _consentless(purpose: str, rt: WorkspaceRuntime) -> Iterator[Found]:
    """A placement personalizes with the person's data: its purpose must be one a person grants or withholds."""
    found = rt.catalog.purposes[purpose]
    why = ("is always allowed" if purpose == NECESSARY
           else f"has legal basis {found.legal_basis!r}, so it is allowed without anyone's consent")
    needing = [p.name for p in rt.catalog if p.needs_consent]
    yield ("purpose", f"consent purpose {purpose!r} {why}: a placement would personalize for everyone; name a "
                      "purpose people consent to, such as 'personalization'",
           f"a purpose with legal basis 'consent': one of {', '.join(repr(n) for n in needing)}", {})


def _placement(spec: JsonObject, final: Mapping[tuple[str, str], Resource],
               rt: WorkspaceRuntime | None) -> Iterator[Found]:
    blocks = {name: r.spec for (kind, name), r in final.items() if kind == "ContentBlock"}
    channel = str(spec.get("channel"))
    named = [("default", spec.get("default"))]
    named += [(f"variants[{i}].block", v.get("block")) for i, v in enumerate(spec.get("variants") or ())]
    named += [(f"rank[{i}].block", c.get("block")) for i, c in enumerate(spec.get("rank") or ())]
    for field, block in named:
        if not isinstance(block, str):
            continue
        found = blocks.get(block)
        if found is None:
            yield (field, f"unknown content block {block!r}{did_you_mean(block, blocks)}",
                   "the name of a ContentBlock", {})
        elif found.get("channel") != channel:
            yield (field, f"content block {block!r} is made for channel {found.get('channel')!r}, not the "
                          f"placement's {channel!r}", f"a ContentBlock for channel {channel!r}", {})
    if "Model" in known_kinds():
        models = {name for kind, name in final if kind == "Model"}
        for i, candidate in enumerate(spec.get("rank") or ()):
            model = candidate.get("model")
            if isinstance(model, str) and model not in models:
                yield (f"rank[{i}].model", f"unknown model {model!r}{did_you_mean(model, models)}",
                       "the name of a Model", {})
    if rt is None:
        return
    purpose = spec.get("purpose") or DEFAULT_PURPOSE
    if isinstance(purpose, str) and purpose not in rt.catalog:
        names = rt.catalog.names()
        yield ("purpose", f"unknown consent purpose {purpose!r}{did_you_mean(purpose, names)}",
               f"one of {', '.join(repr(n) for n in names)}", {})
    elif isinstance(purpose, str) and not rt.catalog.purposes[purpose].needs_consent:
        yield from _consentless(purpose, rt)
    for group in ("variants", "rank"):
        for i, item in enumerate(spec.get(group) or ()):
            if isinstance(item.get("when"), str):
                yield from _rule(f"{group}[{i}].when", str(item["when"]), rt)
