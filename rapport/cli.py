"""The ``rapport`` command line (DESIGN 4.3)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rapport.core import Rapport
from rapport.errors import RapportError
from rapport.settings import load_settings
from rapport.types import WorkspaceId

app = typer.Typer(help="Rapport: consent-first customer data and personalization.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
workspace_app = typer.Typer(help="Workspaces and their credentials.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
console = Console(stderr=True)

WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name or id.")]


def _rapport() -> Rapport:
    return Rapport(load_settings())


def _read_yaml(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        return "\n---\n".join(p.read_text(encoding="utf-8") for p in files)
    return path.read_text(encoding="utf-8")


def _fail(exc: RapportError) -> None:
    console.print(f"[red]error[/red] [{exc.code}] {exc.message}")
    for detail in exc.details:
        console.print(f"  {orjson.dumps(detail).decode()}")
    raise typer.Exit(1)


@app.command()
def serve(host: Annotated[str | None, typer.Option()] = None,
          port: Annotated[int | None, typer.Option()] = None) -> None:
    """Run the server (tracking API, admin API, background work)."""
    from rapport.api.server import serve as run

    rapport = _rapport()
    run(rapport, host or rapport.settings.host, port or rapport.settings.port)


@workspace_app.command("create")
def workspace_create(name: str, json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create a workspace; prints its id, a write key and an admin token (shown once)."""
    rapport = _rapport()
    try:
        created = rapport.create_workspace(name)
    except RapportError as exc:
        _fail(exc)
        return
    finally:
        rapport.close()
    out = {"workspace_id": created.workspace_id, "write_key": created.write_key, "admin_token": created.admin_token}
    if json:
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    else:
        for key, value in out.items():
            sys.stdout.write(f"{key}: {value}\n")


def _changes(path: Path, workspace: str | None, *, write: bool, prune: bool) -> None:
    from rapport.api.app import run_backfills
    from rapport.resources import service

    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        text = _read_yaml(path)
        if write:
            now = rapport.clock.now_ms()
            changes = rapport.db.write(lambda c: service.apply(c, ws, text, "cli", now, prune))
        else:
            changes = rapport.db.read(lambda c: service.diff(c, ws, text, prune))
        for change in changes:
            colour = {"create": "green", "update": "yellow", "delete": "red"}.get(change.action, "dim")
            console.print(f"[{colour}]{change.action:9}[/{colour}] {change.kind}/{change.name}")
            if not write:
                for line in change.diff:
                    console.print(f"    {line}", markup=False, highlight=False)
        if write:
            _backfill_with_progress(rapport, ws, run_backfills)
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


def _backfill_with_progress(rapport: Rapport, ws: WorkspaceId, _runner: object) -> None:
    from rapport.profiles import backfill

    rapport.invalidate(ws)
    rt = rapport.runtime(ws, fresh=True)
    if not rapport.db.write(lambda c: backfill.register_missing(c, rt, rapport.clock)):
        pending = [s for s in rapport.db.read(lambda c: backfill.status(c, rt)) if s["state"] != "live"]
        if not pending:
            return
    with Progress(TextColumn("backfilling computed traits"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("backfill", total=1.0)
        while not rapport.db.write(lambda c: backfill.backfill_chunk(c, rt, rapport.keyring, rapport.clock)):
            states = rapport.db.read(lambda c: backfill.status(c, rt))
            progress.update(task, completed=min(s["progress"] for s in states))
        progress.update(task, completed=1.0)


@app.command()
def apply(file: Annotated[Path, typer.Option("-f", "--file", exists=True, help="YAML file or folder.")],
          workspace: WorkspaceOpt = None,
          prune: Annotated[bool, typer.Option(help="Delete resources of the same kinds absent here.")] = False) -> None:
    """Apply resource documents (idempotent; every change is a new version)."""
    _changes(file, workspace, write=True, prune=prune)


@app.command()
def diff(file: Annotated[Path, typer.Option("-f", "--file", exists=True)], workspace: WorkspaceOpt = None,
         prune: bool = False) -> None:
    """Show what ``apply`` would change, without changing anything."""
    _changes(file, workspace, write=False, prune=prune)


@app.command()
def export(workspace: WorkspaceOpt = None, kind: Annotated[str | None, typer.Option()] = None) -> None:
    """Print every live resource as YAML."""
    from rapport.resources import service

    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        sys.stdout.write(rapport.db.read(lambda c: service.export(c, ws, kind)))
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


@app.command()
def unmerge(merge_id: str, workspace: WorkspaceOpt = None) -> None:
    """Undo a logged merge: split the profile back and recompute both sides."""
    from rapport.identity.unmerge import unmerge as run

    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        rt = rapport.runtime(ws)
        root, loser = rapport.db.write(lambda c: run(c, rt, rapport.keyring, rapport.clock, merge_id, "cli"))
        console.print(f"split {merge_id}: {root} and {loser}")
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
