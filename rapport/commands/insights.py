"""`rapport insights ...`: KPIs per segment, journey and message; recommendations."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from rapport.errors import RapportError

if TYPE_CHECKING:
    from rapport.core import Rapport
    from rapport.types import WorkspaceId

app = typer.Typer(help="KPIs per segment, journey and message; recommendations.", no_args_is_help=True)
recommendations_app = typer.Typer(help="Recommendations: build the aggregates, show a person's lists.",
                                  no_args_is_help=True)
app.add_typer(recommendations_app, name="recommendations")

Workspace = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name or id.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
T = TypeVar("T")


def _run(workspace: str | None, fn: Callable[[Rapport, WorkspaceId], T]) -> T:
    """Run ``fn`` on the workspace; errors print and exit 1."""
    from rapport.cli import _fail, _rapport

    rapport = _rapport()
    try:
        return fn(rapport, rapport.workspace_id(workspace))
    except RapportError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits
    finally:
        rapport.close()


def _print_json(value: object) -> None:
    from rapport.cli import _print_json as print_json

    print_json(value)


@recommendations_app.command("build")
def recommendations_build(workspace: Workspace = None, json: Json = False) -> None:
    """Recompute bought-together pairs, popularity per segment and repurchase intervals from stored events."""
    from rapport.recommendations.service import build_now

    report = _run(workspace, lambda r, ws: build_now(r, ws)).to_json()
    if json:
        _print_json(report)
        return
    sys.stdout.write(" ".join(f"{k}={v}" for k, v in report.items()) + "\n")


@recommendations_app.command("show")
def recommendations_show(
    profile_id: str, workspace: Workspace = None,
    kind: Annotated[str, typer.Option(help="bought_together, popular or replenishment.")] = "bought_together",
    segment: Annotated[str | None, typer.Option(help="Segment for popular.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10, json: Json = False,
) -> None:
    """A person's recommendations of one kind, best first."""
    from rapport.recommendations.service import recommend

    def job(r: Rapport, ws: WorkspaceId) -> dict[str, Any]:
        rt, now = r.runtime(ws), r.clock.now_ms()
        return r.db.read(lambda c: recommend(c, rt, profile_id, kind, segment=segment, limit=limit,
                                             now=now)).to_json()

    found = _run(workspace, job)
    if json:
        _print_json(found)
        return
    if found.get("consent"):
        sys.stdout.write(f"none shown: {found['consent']}\n")
    for item in found["recommendations"]:
        sys.stdout.write(f"{item['product_id']}  {item['product_name'] or ''}  {item['score']}  {item['reason']}\n")


@app.command("replenishment")
def replenishment(
    workspace: Workspace = None,
    due_before: Annotated[str | None, typer.Option("--due-before", help="ISO time (default now + 3 days).")] = None,
    emit: Annotated[bool, typer.Option("--emit", help="Ingest a 'Replenishment Due' event for each (once per "
                                                      "person, product and due date).")] = False,
    json: Json = False,
) -> None:
    """People due to buy a product again (from the last build)."""
    from rapport.analytics.service import instant
    from rapport.recommendations import service
    from rapport.recommendations.model import LEAD_MS

    def job(r: Rapport, ws: WorkspaceId) -> dict[str, Any]:
        now = r.clock.now_ms()
        before = instant("due_before", due_before, now + LEAD_MS)
        rt = r.runtime(ws)
        listed, withheld = r.db.read(lambda c: service.due_allowed(c, rt, before, 10_000, now))
        out: dict[str, Any] = {"due": [d.to_json() for d in listed], "withheld": withheld}
        if emit:
            out["emitted"] = service.emit(r, ws, before).to_json()
        return out

    result = _run(workspace, job)
    if json:
        _print_json(result)
        return
    table = Table("profile", "product", "name", "last purchased", "due")
    for d in result["due"]:
        table.add_row(d["profile_id"], d["product_id"], d["product_name"] or "", d["last_purchased_at"], d["due_at"])
    Console().print(table)
    if result["withheld"]:
        sys.stdout.write(f"{result['withheld']} more due, not shown: they do not allow personalization\n")
    if emit:
        e = result["emitted"]
        sys.stdout.write(f"emitted {e['emitted']} event(s); {e['duplicates']} already emitted; "
                         f"{e['unreachable']} without an identifier\n")


def _cell(value: object, percent: bool = False) -> str:
    if value is None:
        return "—"
    if percent and isinstance(value, float):
        return f"{value:.1%}"
    return str(value)


@app.command("kpis")
def kpis(
    workspace: Workspace = None,
    by: Annotated[str, typer.Option(help="segment, journey or message.")] = "journey",
    from_: Annotated[str | None, typer.Option("--from", help="ISO start (default 30 days before --to).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="ISO end (default now).")] = None,
    min_count: Annotated[int | None, typer.Option("--min-count", help="Raise the suppression minimum.")] = None,
    window: Annotated[str, typer.Option(help="Attribution window, e.g. 3d.")] = "3d",
    membership: Annotated[str, typer.Option(help="Segments: current members or members when sent (period).")]
    = "current",
    json: Json = False,
) -> None:
    """Recipients, open rate, CTR, conversion, revenue per recipient and unsubscribe rate; small cells hidden."""
    from rapport.analytics.service import query_of, report

    def job(r: Rapport, ws: WorkspaceId) -> dict[str, Any]:
        rt = r.runtime(ws)
        q = query_of(rt, by, from_, to, min_count, window, membership, r.clock.now_ms())
        return r.db.read(lambda c: report(c, rt, q))

    result = _run(workspace, job)
    if json:
        _print_json(result)
        return
    keys = {"segment": ("segment",), "journey": ("journey",), "message": ("journey", "step", "campaign_id")}[by]
    table = Table(*keys, "recipients", "open rate", "CTR", "conversion", "revenue / recipient", "unsubscribes",
                  title=f"KPIs by {by}, {result['from']} to {result['to']} (window {result['attribution_window']},"
                        f" cells under {result['min_count']} hidden)")
    for row in [*result["rows"], {**dict.fromkeys(keys, ""), keys[0]: "total", **result["total"]}]:
        table.add_row(*(_cell(row.get(k)) for k in keys), _cell(row["recipients"]),
                      _cell(row["open_rate"], True), _cell(row["ctr"], True), _cell(row["conversion_rate"], True),
                      _cell(row["revenue_per_recipient"]), _cell(row["unsubscribe_rate"], True))
    Console().print(table)
