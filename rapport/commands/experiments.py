"""`rapport experiments ...`: Experiments: results with intervals and a chart."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rapport.core import Rapport
    from rapport.storage.base import Conn
    from rapport.workspaces.runtime import WorkspaceRuntime

app = typer.Typer(help="Experiments: results with intervals and a chart.", no_args_is_help=True)

Workspace = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name or id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _run(workspace: str | None, fn: Callable[[Rapport, WorkspaceRuntime, Conn], Any]) -> Any:
    """Run ``fn`` on a read connection of the workspace; errors print and exit 1."""
    # Imported on use: rapport.cli imports this module.
    from rapport.cli import _fail, _rapport
    from rapport.errors import RapportError

    rapport = _rapport()
    try:
        rt = rapport.runtime(rapport.workspace_id(workspace))
        return rapport.db.read(lambda conn: fn(rapport, rt, conn))
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


@app.command("list")
def experiments_list(workspace: Workspace = None, json: AsJson = False) -> None:
    """Every experiment with its status, target and units per variant."""
    from rapport.cli import _print_json
    from rapport.experiments import service

    entries = _run(workspace, lambda r, rt, conn: service.overview(conn, rt, r.clock.now_ms()))
    if json:
        _print_json(entries)
        return
    for e in entries:
        units = ", ".join(f"{v['name']} {v['units']}" for v in e["variants"])
        held = sum(e["held_out"].values())
        sys.stdout.write(f"{e['name']}  {e['status']}  {e['source']}  units: {units}"
                         f"{f'  held out {held}' if held else ''}\n")


def _fmt(value: float | None, percent: bool = False, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}%" if percent else f"{value:.{digits}g}"


def _interval(pair: list[float | None], percent: bool = False) -> str:
    return f"[{_fmt(pair[0], percent)}, {_fmt(pair[1], percent)}]"


@app.command("results")
def experiments_results(
    name: str,
    workspace: Workspace = None,
    json: AsJson = False,
    png: Annotated[Path | None, typer.Option("--png", help="Also write the lift chart to this PNG file.")] = None,
) -> None:
    """Per metric and variant against control: lift with interval, p-values (raw, Holm, BH), chance to beat
    control, the always-valid p-value, CUPED; the sample-ratio check and guardrails."""
    from rich.console import Console
    from rich.table import Table

    from rapport.cli import _print_json
    from rapport.experiments import chart, service
    from rapport.experiments.results import to_json

    def compute(rapport: Rapport, rt: WorkspaceRuntime, conn: Conn) -> Any:
        return service.results(conn, rt, name, rapport.clock.now_ms())

    results = _run(workspace, compute)
    data = to_json(results)
    if png is not None:
        png.write_bytes(chart.png(results))
    if json:
        _print_json(data)
        return
    console = Console(width=None if sys.stdout.isatty() else 200)  # piped output: no wrapping at 80
    units = ", ".join(f"{k} {v}" for k, v in data["units"].items())
    held = ", ".join(f"{k} {v}" for k, v in data["held_out"].items()) or "none"
    console.print(f"[bold]{data['experiment']}[/bold] ({data['status']}, {data['source']}) units: {units}; "
                  f"held out: {held}")
    srm = data["srm"]
    if srm is not None:
        verdict = "[red]MISMATCH[/red]" if srm["mismatch"] else "ok"
        console.print(f"sample ratio check: p = {_fmt(srm['p_value'])} {verdict}")
    for warning in data["warnings"]:
        console.print(f"[yellow]warning[/yellow] {warning}")

    def table(title: str, metrics: list[dict[str, Any]]) -> None:
        t = Table(title=title)
        for column in ("metric", "variant", "control", "treatment", "lift", "interval", "p", "p Holm", "p BH",
                       "P(beat)", "seq p", "CUPED lift", "outcome"):
            t.add_column(column)
        for m in metrics:
            for c in m["comparisons"]:
                bayes, seq, cuped = c["bayes"], c["sequential"], c["cuped"]
                outcome = c["outcome"] + (" GUARDRAIL" if c["guardrail_violated"] else "")
                t.add_row(f"{m['metric']} ({m['role']})", c["variant"], _fmt(c["control_mean"]),
                          _fmt(c["treatment_mean"]), _fmt(c["lift"], True), _interval(c["lift_ci"], True),
                          _fmt(c["p_value"]), _fmt(c["p_holm"]), _fmt(c["p_bh"]),
                          _fmt(bayes["chance_to_beat_control"]) if bayes else "-",
                          _fmt(seq["p_value"]) if seq else "-", _fmt(cuped["lift"], True) if cuped else "-",
                          outcome)
        console.print(t)

    table(f"Experiment {data['experiment']}", data["metrics"])
    for segment in data["segments"]:
        table(f"Segment {segment['segment']}", segment["metrics"])
