"""`rapport models ...`: Propensity models: train, score, list, show."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rapport.models.catalog import Models

app = typer.Typer(help="Propensity models: train, score, list, show.", no_args_is_help=True)

WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name or id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _models(workspace: str | None, fn: Callable[[Models], Any]) -> Any:
    """Run ``fn`` on the workspace's models; errors print and exit 1."""
    # Imported on use: rapport.cli imports this module.
    from rapport.cli import _fail, _rapport
    from rapport.errors import RapportError
    from rapport.models.catalog import Models

    rapport = _rapport()
    try:
        return fn(Models(rapport, rapport.workspace_id(workspace)))
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


def _with_progress(workspace: str | None, fn: Callable[[Models, Callable[[str, int, int], None]], Any]) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rapport.cli import console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        return _models(workspace, lambda m: fn(m, report))


def _metrics_line(metrics: dict[str, Any]) -> str:
    def show(key: str, digits: int = 3) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    return (f"AUC {show('auc')}  ECE {show('ece')}  Brier {show('brier')}  base rate {show('base_rate')}"
            f"  n {show('n')}")


def _summary(out: dict[str, Any]) -> None:
    from rich.table import Table

    from rapport.cli import console

    population = out["population"]
    console.print(f"[bold]{out['name']}[/bold] v{out['version']} trained at {out['trained_at']}"
                  f" (features as of {out['cutoff']})")
    console.print(f"  {population['trained_on']} people ({population['positives']} positive) of "
                  f"{population['existing_at_cutoff']} existing at the cutoff; calibration: {out['calibration']}")
    console.print(f"  test split: {_metrics_line(out['metrics'])}")
    table = Table("feature", "coefficient (per std. dev., log-odds)")
    for name, coef in sorted(out["coefficients"].items(), key=lambda kv: -abs(kv[1])):
        table.add_row(name, f"{coef:+.4f}")
    console.print(table)
    if "scored" in out:
        console.print(f"  scores written back for {out['scored']} people")


@app.command("train")
def train(name: str, workspace: WorkspaceOpt = None, json: JsonOpt = False,
          no_score: Annotated[bool, typer.Option("--no-score", help="Do not write scores back.")] = False) -> None:
    """Train a new version of a model on a point-in-time snapshot; with write_to, score everyone."""
    out = _with_progress(workspace, lambda m, report: m.train(name, "cli", report, write_back=not no_score))
    if json:
        from rapport.cli import _print_json

        _print_json(out)
        return
    _summary(out)


@app.command("score")
def score(name: str, workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """Score every live profile with the latest version and write the scores to the model's write_to trait."""
    out = _with_progress(workspace, lambda m, report: m.score(name, "cli", report))
    if json:
        from rapport.cli import _print_json

        _print_json(out)
        return
    target = f"computed.{out['write_to']}" if out.get("write_to") else "nothing (the model has no write_to)"
    sys.stdout.write(f"{out['name']} v{out['version']}: {out['scored']} people scored into {target}\n")


@app.command("list")
def listing(workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """Every model with its latest version's test metrics."""
    entries = _models(workspace, lambda m: m.catalog())
    if json:
        from rapport.cli import _print_json

        _print_json(entries)
        return
    for e in entries:
        latest = e["latest"]
        state = "not trained" if latest is None else f"v{latest['version']}  {_metrics_line(latest['metrics'])}"
        writes = f"  -> computed.{e['write_to']}" if e["write_to"] else ""
        sys.stdout.write(f"{e['name']}  {state}{writes}\n")


@app.command("show")
def show(name: str, workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """One model: its resource and every trained version with metrics."""
    out = _models(workspace, lambda m: m.describe(name))
    if json:
        from rapport.cli import _print_json

        _print_json(out)
        return
    sys.stdout.write(f"{out['name']}  target {out['resource']['target']}  features {out['resource']['features']}\n")
    for v in out["versions"]:
        scored = f"  scored {v['scored']} at {v['scored_at']}" if v["scored_at"] else ""
        sys.stdout.write(f"  v{v['version']}  trained {v['trained_at']}  cutoff {v['cutoff']}  "
                         f"{_metrics_line(v['metrics'])}{scored}\n")
