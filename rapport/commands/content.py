"""`rapport content ...`: content blocks and placements: list them, show what they read, decide for a profile."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer

app = typer.Typer(help="Content blocks and placements: list, show, decide for a profile.", no_args_is_help=True)

WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name or id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def content_list(workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """Every content block and placement with its channel and the profile fields it reads."""
    from rapport.cli import _in_workspace, _print_json
    from rapport.content import catalog

    out = _in_workspace(workspace, lambda rapport, ws: catalog.listing(rapport.runtime(ws)))
    if json:
        _print_json(out)
        return
    for block in out["blocks"]:
        sys.stdout.write(f"block      {block['name']:<24} {block['channel']:<6} reads: "
                         f"{', '.join(block['reads']) or '-'}\n")
    for placement in out["placements"]:
        sys.stdout.write(f"placement  {placement['name']:<24} {placement['channel']:<6} by {placement['chooses_by']}, "
                         f"blocks: {', '.join(placement['blocks'])}\n")


@app.command("show")
def content_show(name: str, workspace: WorkspaceOpt = None) -> None:
    """One block or placement as JSON, with the profile fields its Liquid and rules read."""
    from rapport.cli import _in_workspace, _print_json
    from rapport.content import catalog

    _print_json(_in_workspace(workspace, lambda rapport, ws: catalog.describe(rapport.runtime(ws), name)))


@app.command("decide")
def content_decide(
    placement: Annotated[list[str], typer.Option("--placement", "-p", help="A placement (repeatable).")],
    workspace: WorkspaceOpt = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="The person's user id.")] = None,
    anonymous_id: Annotated[str | None, typer.Option("--anonymous-id", help="The person's anonymous id.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="A profile id.")] = None,
    context: Annotated[str | None, typer.Option("--context", help='Request context as JSON, e.g. \'{"page": '
                                                                  '"home"}\'.')] = None,
    locale: Annotated[str | None, typer.Option("--locale", help="The request's locale, e.g. de-AT.")] = None,
    record: Annotated[bool, typer.Option("--record", help="Count it as a real decision: assign the person to "
                                                           "experiments, record exposures and impressions.")] = False,
) -> None:
    """Decide placements for a person, as an admin sees it: block, content, reason, confidence, guardrails. A
    preview (dry run) unless --record: nobody is assigned and no exposure or impression is recorded."""
    from rapport.cli import _in_workspace, _print_json
    from rapport.decisions.service import decide_request, parse_request

    body: dict[str, Any] = {"placements": placement, "dry_run": not record}
    for key, value in (("user_id", user_id), ("anonymous_id", anonymous_id), ("profile_id", profile),
                       ("locale", locale)):
        if value is not None:
            body[key] = value
    if context is not None:
        try:
            body["context"] = orjson.loads(context)
        except orjson.JSONDecodeError:
            raise typer.BadParameter("--context must be a JSON object") from None
    request = parse_request(body, admin=True)
    _print_json(_in_workspace(workspace, lambda rapport, ws: decide_request(rapport, ws, request, full=True)))
