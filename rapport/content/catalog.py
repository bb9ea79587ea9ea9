"""The content catalog: blocks and placements with what each reads of a profile (static analysis)."""

from __future__ import annotations

from rapport.clock import to_iso
from rapport.content.compile import Block, Placement, library
from rapport.errors import NotFoundError
from rapport.resources.fields import did_you_mean
from rapport.rules import paths
from rapport.templates.render import fields_read
from rapport.types import JsonObject
from rapport.workspaces.runtime import WorkspaceRuntime


def _block_json(block: Block, rt: WorkspaceRuntime) -> JsonObject:
    rule_reads = {".".join((p.root, *p.parts)) for p in paths(block.when)} if block.when is not None else set()
    return {
        "kind": "ContentBlock", "name": block.name, "version": rt.versions.get(("ContentBlock", block.name)),
        "channel": block.channel, "locale": block.locale, "locales": sorted(k for k in block.texts if k),
        "tags": list(block.tags),
        "valid_from": to_iso(block.valid_from) if block.valid_from is not None else None,
        "valid_until": to_iso(block.valid_until) if block.valid_until is not None else None,
        "value": block.value, "products": sorted(block.products),
        "cap": {"count": block.cap.count, "per": block.cap.per} if block.cap is not None else None,
        "when": block.when_text,
        "reads": sorted(block.reads),
        "rule_reads": sorted(rule_reads),
    }


def _placement_json(placement: Placement, rt: WorkspaceRuntime) -> JsonObject:
    blocks = library(rt).blocks
    reads = sorted({path for name in placement.blocks() if name in blocks for path in blocks[name].reads})
    return {
        "kind": "Placement", "name": placement.name, "version": rt.versions.get(("Placement", placement.name)),
        "channel": placement.channel, "purpose": placement.purpose, "default": placement.default,
        "chooses_by": "rank" if placement.rank else ("rules" if placement.variants else "default"),
        "variants": [{"block": v.block, "when": v.text} for v in placement.variants],
        "rank": [{"block": c.block, "model": c.model, "value": c.value, "when": c.when_text} for c in placement.rank],
        "experiments": [e.name for e in placement.experiments],
        "blocks": list(placement.blocks()),
        "reads": reads,
        "rule_reads": {"traits": sorted(placement.needs.traits), "segments": sorted(placement.needs.segments)},
    }


def listing(rt: WorkspaceRuntime) -> JsonObject:
    """Every block and placement, with what it reads."""
    lib = library(rt)
    return {"blocks": [_block_json(lib.blocks[n], rt) for n in sorted(lib.blocks)],
            "placements": [_placement_json(lib.placements[n], rt) for n in sorted(lib.placements)]}


def describe(rt: WorkspaceRuntime, name: str) -> JsonObject:
    """One block, placement or message template by name (in that order when names are shared), with the profile
    fields it reads."""
    lib = library(rt)
    if name in lib.blocks:
        return _block_json(lib.blocks[name], rt)
    if name in lib.placements:
        return _placement_json(lib.placements[name], rt)
    if name in rt.templates:
        spec = rt.specs.get("Template", {}).get(name, {})
        return {"kind": "Template", "name": name, "version": rt.versions.get(("Template", name)),
                "channel": spec.get("channel"), "reads": sorted(fields_read(rt.templates[name]))}
    names = [*lib.blocks, *lib.placements, *rt.templates]
    raise NotFoundError(f"no content block, placement or template {name!r}{did_you_mean(name, names)}",
                        code="content_not_found")
