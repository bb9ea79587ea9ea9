"""The ``rapport`` command line (DESIGN 4.3)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rapport.clock import to_iso
from rapport.commands import content as content_commands
from rapport.commands import experiments as experiments_commands
from rapport.commands import insights as insights_commands
from rapport.commands import models as models_commands
from rapport.core import Rapport
from rapport.errors import RapportError, ValidationError
from rapport.settings import load_settings
from rapport.types import WorkspaceId

if TYPE_CHECKING:
    from rapport.journeys.reports import Journeys
    from rapport.segments.catalog import Segments

app = typer.Typer(help="Rapport: consent-first customer data and personalization.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
workspace_app = typer.Typer(help="Workspaces and their credentials.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
quarantine_app = typer.Typer(help="Messages a tracking plan quarantined: list them, replay them.",
                             no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")
segments_app = typer.Typer(help="Segments: catalog, preview, members, export, explain, history, overlap, refresh.",
                           no_args_is_help=True)
app.add_typer(segments_app, name="segments")
journeys_app = typer.Typer(help="Journeys: catalog, statistics, enrollments, a person's messages, simulation.",
                           no_args_is_help=True)
app.add_typer(journeys_app, name="journeys")
templates_app = typer.Typer(help="Message templates: preview as a profile.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
app.add_typer(content_commands.app, name="content")
app.add_typer(experiments_commands.app, name="experiments")
app.add_typer(models_commands.app, name="models")
app.add_typer(insights_commands.app, name="insights")
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


@app.command()
def worker() -> None:
    """Run journeys without the HTTP server: feed events to journeys, step due timers, send messages.

    The server runs this work too; extra workers send more. On PostgreSQL several may run at once; on
    SQLite the server's own worker is the one to use. Stops on SIGINT/SIGTERM; killed at any moment, it
    loses nothing (a message it had handed to a channel is sent again with the same idempotency key once
    its lease, ``RAPPORT_SEND_LEASE_SECONDS``, ends)."""
    import asyncio
    import signal

    from rapport.api.app import journey_worker
    from rapport.api.server import configure_logging

    rapport = _rapport()
    configure_logging(rapport.settings.log_level, rapport.settings.log_json)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await journey_worker(rapport, stop)

    try:
        asyncio.run(run())
    finally:
        rapport.close()


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


@workspace_app.command("identity-secret")
def workspace_identity_secret(
    workspace: WorkspaceOpt = None,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace the secret by a new one first.")] = False,
    grace: Annotated[str | None, typer.Option(help="With --rotate: how long the old secret's hashes still pass "
                                                   "(default 24h, at most 30d; 0 after a leak).")] = None,
) -> None:
    """Print the workspace's identity-verification secret (hex): your server signs each user id with it, `user_hash`
    = hex HMAC-SHA256(secret, user id), before a browser asks for that user's decisions with the write key. Each
    read and rotation is audited."""
    from rapport.storage.sql import workspaces as ws_sql
    from rapport.workspaces import verification

    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        rt = rapport.runtime(ws)
        now = rapport.clock.now_ms()
        if rotate:
            period = verification.grace_of(grace)
            rapport.db.write(lambda c: verification.rotate(c, rt, now, period, "cli"))
            rapport.invalidate(ws)
            rt = rapport.runtime(ws)
        elif grace is not None:
            raise ValidationError("--grace goes with --rotate", code="invalid_request")
        rapport.db.write(lambda c: ws_sql.audit(c, ws, "cli", "settings.identity_secret.read", ws,
                                                {"version": rt.identity_version}, now))
        sys.stdout.write(verification.secret(rapport.keyring, rt).hex() + "\n")
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


def _changes(path: Path, workspace: str | None, *, write: bool, prune: bool) -> None:
    from rapport.api.app import run_backfills
    from rapport.resources import service

    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        text = _read_yaml(path)
        now = rapport.clock.now_ms()
        if write:
            changes = rapport.db.write(lambda c: service.apply(c, ws, text, "cli", now, prune, keyring=rapport.keyring))
        else:
            changes = rapport.db.read(lambda c: service.diff(c, ws, text, prune, now=now, keyring=rapport.keyring))
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


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .csv, .jsonl or .parquet file.")],
    workspace: WorkspaceOpt = None,
    kind: Annotated[Literal["events", "profiles"], typer.Option(
        help="Rows are Segment messages (events) or people with traits (profiles).")] = "events",
    restart: Annotated[bool, typer.Option(help="Start from the first row instead of the saved position.")] = False,
) -> None:
    """Import events or profiles through the tracking path; an interrupted import continues when run again."""
    from rich.progress import MofNCompleteColumn

    from rapport.ingestion.importer import Importer, ImportReport

    rapport = _rapport()
    report: ImportReport | None = None
    try:
        ws = rapport.workspace_id(workspace)
        importer = Importer(rapport, ws, path, kind)
        with Progress(TextColumn(f"importing {path.name}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("rows · {task.fields[bad]} bad"), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("import", total=None, bad=0)

            def on_chunk(done: ImportReport) -> None:
                nonlocal report
                report = done
                progress.update(task, total=done.total, completed=done.position, bad=done.rejected)

            report = importer.run(restart=restart, on_chunk=on_chunk)
    except RapportError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        at = f" after row {report.position}" if report is not None else ""
        console.print(f"[yellow]interrupted[/yellow]{at}; run the same command again to continue")
        raise typer.Exit(130) from None
    finally:
        rapport.close()
    assert report is not None
    if report.rows == 0 and report.finished and report.resumed_from > 0:
        console.print(f"nothing new: all {report.total} rows were imported before (--restart imports them again)")
    console.print(f"{report.rows} rows read (from row {report.resumed_from + 1}): {report.accepted} stored, "
                  f"{report.duplicates} duplicates, {report.quarantined} quarantined, "
                  f"{report.restricted} kept minimized without consent, {report.rejected} refused")
    for error in report.errors[:20]:
        console.print(f"  row {error.row} [{error.code}] {error.message}", markup=False, highlight=False)
    if report.rejected > 20:
        console.print(f"  ... and {report.rejected - 20} more refused rows")
    if report.rejected:
        raise typer.Exit(2)


@quarantine_app.command("list")
def quarantine_list(
    workspace: WorkspaceOpt = None,
    event: Annotated[str | None, typer.Option(help="Only messages of this event.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Messages per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue from a previous page.")] = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per line, with the payload.")] = False,
) -> None:
    """List quarantined messages, newest first, with the plan and violations that kept each out."""
    from rapport.ingestion import quarantine

    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        items, nxt = quarantine.page(rapport, ws, event=event, cursor=cursor, limit=limit)
        total = quarantine.count(rapport, ws, event)
    except RapportError as exc:
        _fail(exc)
        return
    finally:
        rapport.close()
    if json:
        sys.stdout.write("".join(orjson.dumps(m.to_json()).decode() + "\n" for m in items))
    else:
        for m in items:
            sys.stdout.write(f"{m.id}  {to_iso(m.received_at)}  {m.event or '-'}  plan {m.plan}  "
                             f"message {m.message_id}\n")
            for violation in m.violations:
                sys.stdout.write(f"    {violation}\n")
    console.print(f"{total} quarantined" + (f" {event!r} message(s)" if event else " message(s)"))
    if nxt is not None:
        console.print(f"more: --cursor {nxt}")


@quarantine_app.command("replay")
def quarantine_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Ids of quarantined messages (see 'quarantine list').")]
    = None,
    workspace: WorkspaceOpt = None,
    event: Annotated[str | None, typer.Option(help="Every quarantined message of this event.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every quarantined message.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run quarantined messages through the current tracking plans; store those that now pass."""
    from rapport.ingestion import quarantine

    body: dict[str, object] = {}
    if ids:
        body["ids"] = ids
    if event is not None:
        body["event"] = event
    if all_:
        body["all"] = True
    rapport = _rapport()
    try:
        ws = rapport.workspace_id(workspace)
        report = quarantine.replay(rapport, ws, quarantine.Selection.from_json(body), "cli")
    except RapportError as exc:
        _fail(exc)
        return
    finally:
        rapport.close()
    if json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
    else:
        console.print(f"{report.matched} matched: {report.replayed} replayed ({report.accepted} stored, "
                      f"{report.duplicates} already stored, {report.restricted} kept minimized without consent), "
                      f"{report.quarantined} still quarantined, {report.invalid} invalid, "
                      f"{report.not_found} not found")
        for error in report.errors[:20]:
            console.print(f"  {error.id} [{error.code}] {error.message}", markup=False, highlight=False)
        if len(report.errors) > 20:
            console.print(f"  ... and {len(report.errors) - 20} more")
    if report.errors:
        raise typer.Exit(2)


def _segments(workspace: str | None, fn: Callable[[Segments], Any]) -> Any:
    """Run ``fn`` on the workspace's segments; errors print and exit 1."""
    from rapport.segments.catalog import Segments

    rapport = _rapport()
    try:
        return fn(Segments(rapport, rapport.workspace_id(workspace)))
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


def _journeys(workspace: str | None, fn: Callable[[Journeys], Any]) -> Any:
    """Run ``fn`` on the workspace's journeys; errors print and exit 1."""
    from rapport.journeys.reports import Journeys

    rapport = _rapport()
    try:
        return fn(Journeys(rapport, rapport.workspace_id(workspace)))
    except RapportError as exc:
        _fail(exc)
    finally:
        rapport.close()


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _as_of(value: str | None) -> int | None:
    if value is None:
        return None
    from rapport.clock import parse_iso

    try:
        return parse_iso(value)
    except ValueError:
        console.print(f"[red]error[/red] --as-of {value!r} is not an ISO-8601 time")
        raise typer.Exit(1) from None


@segments_app.command("list")
def segments_list(workspace: WorkspaceOpt = None,
                  json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every segment with its owner, purpose, group, members and state."""
    entries = _segments(workspace, lambda s: s.catalog())
    if json:
        _print_json(entries)
        return
    for e in entries:
        group = f"  group {e['group']} (priority {e['priority']}{', default' if e['default'] else ''})" \
            if e["group"] else ""
        sys.stdout.write(f"{e['name']}  v{e['version']}  {e['members']} members  {e['state']}{group}\n")
        if e.get("rule"):
            sys.stdout.write(f"    {e['rule']}\n")


@segments_app.command("preview")
def segments_preview(rule: Annotated[str, typer.Argument(help="Rule text, e.g. 'computed.orders_90d > 0'.")],
                     workspace: WorkspaceOpt = None,
                     as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time (default now).")] = None,
                     limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
                     cursor: Annotated[str | None, typer.Option()] = None) -> None:
    """How many profiles a rule selects, and a sample of them, before saving it."""
    at = _as_of(as_of)

    def run(s: Segments) -> Any:
        return s.preview(rule, at if at is not None else s.rapport.clock.now_ms(), limit, cursor)

    _print_json(_segments(workspace, run))


@segments_app.command("members")
def segments_members(name: str, workspace: WorkspaceOpt = None,
                     limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
                     cursor: Annotated[str | None, typer.Option()] = None,
                     activatable: Annotated[bool | None, typer.Option(
                         "--activatable/--not-activatable", help="Only members with (or without) consent "
                         "for the segment's purpose.")] = None) -> None:
    """Current members of a segment, by profile id."""
    _print_json(_segments(workspace, lambda s: s.members(name, cursor, limit, activatable)))


@segments_app.command("export")
def segments_export(
    name: str,
    workspace: WorkspaceOpt = None,
    fmt: Annotated[Literal["csv", "parquet"], typer.Option("--format", help="File format.")] = "csv",
    output: Annotated[Path | None, typer.Option("-o", "--output", dir_okay=False,
                                                help="File to write (CSV: standard output when absent).")] = None,
    include: Annotated[str | None, typer.Option(help="Personal columns to add: 'email', 'phone' or 'email,phone'.")]
    = None,
) -> None:
    """Current members of a segment as a CSV or Parquet file, written page by page."""
    from rapport.segments import export

    if fmt == "parquet" and output is None:
        console.print("[red]error[/red] --format parquet needs -o FILE")
        raise typer.Exit(1)

    def run(s: Segments) -> int:
        personal = export.personal_columns((include or "").split(","))
        pages = s.export(name, personal)  # an unknown segment fails here, before the file is created
        count = 0

        def counted() -> Iterator[list[Any]]:
            nonlocal count
            for page in pages:
                count += len(page)
                yield page

        chunks = export.encode(fmt, (*export.COLUMNS, *personal), counted())
        if output is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return count
        try:
            with output.open("wb") as file:
                for chunk in chunks:
                    file.write(chunk)
        except BaseException:
            output.unlink(missing_ok=True)  # no half-written export left behind
            raise
        return count

    count = _segments(workspace, run)
    console.print(f"exported {count} member(s) of {name!r}" + (f" to {output}" if output else ""))


@segments_app.command("explain")
def segments_explain(name: str, profile_id: str, workspace: WorkspaceOpt = None,
                     as_of: Annotated[str | None, typer.Option("--as-of")] = None) -> None:
    """The segment's rule for one profile, every node with its value."""
    at = _as_of(as_of)
    _print_json(_segments(workspace, lambda s: s.explain(
        name, profile_id, at if at is not None else s.rapport.clock.now_ms())))


@segments_app.command("versions")
def segments_versions(name: str, workspace: WorkspaceOpt = None) -> None:
    """Every applied version of a segment with the fields that changed from the one before."""
    _print_json(_segments(workspace, lambda s: s.versions(name)))


@segments_app.command("history")
def segments_history(name: str, workspace: WorkspaceOpt = None,
                     profile_id: Annotated[str | None, typer.Option("--profile")] = None,
                     limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
                     cursor: Annotated[str | None, typer.Option()] = None) -> None:
    """Entries and exits of a segment, newest first."""
    _print_json(_segments(workspace, lambda s: s.history(name, profile_id, cursor, limit)))


@segments_app.command("overlap")
def segments_overlap(names: Annotated[list[str], typer.Argument(help="Segment names.")],
                     workspace: WorkspaceOpt = None) -> None:
    """Members shared by each pair of segments."""
    out = _segments(workspace, lambda s: s.overlap(names))
    width = max(len(n) for n in out["segments"])
    sys.stdout.write(" " * (width + 2) + "  ".join(f"{n:>{max(len(n), 6)}}" for n in out["segments"]) + "\n")
    for name, row in zip(out["segments"], out["matrix"], strict=True):
        cells = "  ".join(f"{v:>{max(len(n), 6)}}" for n, v in zip(out["segments"], row, strict=True))
        sys.stdout.write(f"{name:<{width}}  {cells}\n")


@segments_app.command("refresh")
def segments_refresh(names: Annotated[list[str] | None, typer.Argument(help="Segments (default: all).")] = None,
                     workspace: WorkspaceOpt = None,
                     json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recompute membership by SQL and reconcile it with the live state; prints the differences."""
    report = _segments(workspace, lambda s: s.refresh(names or None, "cli"))
    if json:
        _print_json(report)
        return
    for r in report:
        console.print(f"{r['name']}: {r['members']} members, {r['differences']} difference(s) "
                      f"({r['entered']} entered, {r['exited']} exited)")


JsonOpt = Annotated[bool, typer.Option("--json")]
EventOpt = Annotated[str | None, typer.Option(help="The triggering event's properties as JSON.")]


@journeys_app.command("list")
def journeys_list(workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """Every published journey with its enrollments and messages by status."""
    entries = _journeys(workspace, lambda j: j.catalog())
    if json:
        _print_json(entries)
        return
    for e in entries:
        counts = "  ".join(f"{k} {v}" for k, v in e["enrollments"].items())
        sent = "  ".join(f"{k} {v}" for k, v in e["messages"].items() if v)
        sys.stdout.write(f"{e['name']}  v{e['version']}  entry {orjson.dumps(e['entry']).decode()}  {counts}\n"
                         f"    messages: {sent or 'none yet'}\n")


@journeys_app.command("show")
def journeys_show(name: str, workspace: WorkspaceOpt = None) -> None:
    """One journey: versions and, per step, messages by status, refusal reasons and waiting enrollments."""
    _print_json(_journeys(workspace, lambda j: j.detail(name)))


@journeys_app.command("messages")
def journeys_messages(profile_id: str, workspace: WorkspaceOpt = None) -> None:
    """A person's messages (sent, waiting, or refused with the gate's reason) and enrollments."""
    _print_json(_journeys(workspace, lambda j: j.messages(profile_id)))


@journeys_app.command("simulate")
def journeys_simulate(
    name: str,
    workspace: WorkspaceOpt = None,
    profile: Annotated[list[str] | None, typer.Option("--profile", "-p", help="A profile id (repeatable).")] = None,
    sample: Annotated[int, typer.Option(help="Stored profiles to sample when no --profile is given.")] = 100,
    synthetic: Annotated[int, typer.Option(help="Profiles without data that granted every purpose.")] = 0,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Simulated days.")] = 30,
    json: JsonOpt = False,
) -> None:
    """Run a journey on a simulated clock over stored or synthetic profiles: who went where and what would be
    sent (or refused, and why). Nothing is stored or sent."""
    out = _journeys(workspace, lambda j: j.simulate(name, profiles=profile or (), sample=sample,
                                                    synthetic=synthetic, days=days))
    if json:
        _print_json(out)
        return
    summary = out["summary"]
    sys.stdout.write(f"{name} v{out['version']} over {out['days']} days from {out['start']}: "
                     f"{summary['entered']} of {summary['profiles']} profiles entered\n")
    for title in ("ended", "steps_reached", "paths", "messages"):
        if summary[title]:
            sys.stdout.write(f"{title.replace('_', ' ')}:\n")
            for key, value in summary[title].items():
                sys.stdout.write(f"  {value:>6}  {key}\n")


def _event_option(value: str | None) -> dict[str, Any]:
    """The ``--event`` option: the triggering event's properties as a JSON object."""
    if value is None:
        return {}
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        console.print(f"[red]error[/red] --event is not JSON: {exc}")
        raise typer.Exit(1) from None
    if not isinstance(event, dict):
        console.print("[red]error[/red] --event must be a JSON object of the event's properties")
        raise typer.Exit(1)
    return event


def _request(event: str | None, **options: Any) -> dict[str, Any]:
    """A command's request body: the ``--event`` option's properties and the options given."""
    return {"event": _event_option(event), **{key: value for key, value in options.items() if value}}


def _in_workspace(workspace: str | None, fn: Callable[[Rapport, WorkspaceId], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` with an opened Rapport and the workspace's id, closed afterwards; errors print and exit 1."""
    rapport = _rapport()
    try:
        return fn(rapport, rapport.workspace_id(workspace))
    except RapportError as exc:
        _fail(exc)
        raise
    finally:
        rapport.close()


@journeys_app.command("test-send")
def journeys_test_send(
    name: str,
    workspace: WorkspaceOpt = None,
    step: Annotated[str | None, typer.Option(help="One send step's id (default: every send step).")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="An email address or E.164 phone number "
                                                              "(repeatable).")] = None,
    seed_list: Annotated[str | None, typer.Option("--seed-list", help="A seed list of the workspace settings.")] = None,
    as_profile: Annotated[str | None, typer.Option("--as-profile", help="Render as this profile id "
                                                                         "(default: sample data).")] = None,
    event: EventOpt = None,
    json: JsonOpt = False,
) -> None:
    """Send a journey's messages to seed addresses, subjects marked [Test]; the send gate is not applied (the
    output says which checks) and journey statistics do not count them. Exit 2 when a send failed."""
    import asyncio

    from rapport.journeys.proofs import test_send

    body = _request(event, step=step, seed_list=seed_list, as_profile=as_profile, to=to)
    out = _in_workspace(workspace, lambda rapport, ws: asyncio.run(test_send(rapport, ws, name, body, "cli")))
    if json:
        _print_json(out)
    else:
        source = f"seed list {out['seed_list']}" if out["seed_list"] else "the given addresses"
        who = f"as profile {out['as_profile']}" if out["as_profile"] else "with sample data"
        sys.stdout.write(f"test send {out['test_send_id']} of {name} v{out['version']} to {source}, {who}: "
                         f"{out['sent']} sent, {out['failed']} failed\n")
        for s in out["sends"]:
            result = f"sent ({s['provider_id']})" if s["status"] == "sent" else f"FAILED: {s['error']}"
            sys.stdout.write(f"  step {s['step']} {s['channel']}/{s['template']} -> {s['to']}: {result}\n")
        for s in out["skipped"]:
            sys.stdout.write(f"  step {s['step']} {s['channel']}/{s['template']} skipped: {s['reason']}\n")
        sys.stdout.write("not applied because this is a test: "
                         + ", ".join(n["check"] for n in out["not_applied"]) + "\n")
    if out["failed"]:
        raise typer.Exit(2)


@templates_app.command("preview")
def templates_preview(
    name: str,
    workspace: WorkspaceOpt = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="A profile id.")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="The profile's user id.")] = None,
    event: EventOpt = None,
    json: JsonOpt = False,
) -> None:
    """Render a template as a profile, strictly: a value it outputs that the profile lacks is an error naming the
    variable and its line. Without --profile or --user-id, with sample values."""
    from rapport.journeys.proofs import preview_template

    body = _request(event, profile_id=profile, user_id=user_id)
    out = _in_workspace(workspace, lambda rapport, ws: preview_template(rapport, ws, name, body))
    if json:
        _print_json(out)
        return
    sys.stdout.write(f"{name} as {out['profile_id'] or 'sample data'}:\n")
    for part, value in out["parts"].items():
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        sys.stdout.write(f"--- {part}\n{text}\n")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, help="Customers to generate.")] = 5000,
    months: Annotated[int, typer.Option(min=1, max=36, help="Months of history.")] = 6,
    seed: Annotated[int, typer.Option(help="Same seed, same shop.")] = 42,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the demo afterwards.")] = True,
) -> None:
    """Create the demo workspace with a generated shop (customers, months of events, consents) and serve it."""
    from rich.progress import MofNCompleteColumn

    from rapport.demo.run import WORKSPACE, DemoOptions, DemoResult, Generation, run_demo, tour

    rapport = _rapport()
    options = DemoOptions(customers=customers, months=months, seed=seed)
    result: DemoResult | None = None
    try:
        with Progress(TextColumn("generating the demo shop"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("customers · {task.fields[events]:,} events · {task.fields[rate]:,.0f}/s"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("demo", total=customers, events=0, rate=0.0)
            started = rapport.clock.monotonic()

            def on_progress(stats: Generation, total: int) -> None:
                elapsed = max(rapport.clock.monotonic() - started, 1e-6)
                progress.update(task, completed=stats.customers, events=stats.messages,
                                rate=stats.messages / elapsed)

            result = run_demo(rapport, options, on_progress)
    except RapportError as exc:
        rapport.close()
        _fail(exc)
        return
    except KeyboardInterrupt:
        rapport.close()
        console.print("[yellow]interrupted[/yellow]; run the same command again to continue where it stopped")
        raise typer.Exit(130) from None
    gen = result.generation
    if gen.skipped:
        console.print(f"the demo workspace already holds this shop ({result.events:,} events); serving it")
    else:
        console.print(f"generated {gen.messages:,} events for {customers - gen.resumed_from:,} customers in "
                      f"{gen.seconds:.1f} s ({gen.rate:,.0f} events/s): {gen.accepted:,} stored, "
                      f"{gen.restricted:,} kept minimized without consent, {gen.withdrawals:,} unsubscribes")
    if result.segments:
        differences = sum(r.entered + r.exited for r in result.segments)
        console.print(f"{len(result.segments)} segments, kept live during generation; the batch (SQL) refresh "
                      f"found {differences} difference(s): " + ", ".join(
                          f"{r.segment} {r.members:,}" for r in result.segments))
    for note in result.notes:
        console.print(note)
    sys.stdout.write(f"workspace: {WORKSPACE} ({result.workspace_id})\nwrite_key: {result.write_key}\n"
                     f"admin_token: {result.admin_token}\n")
    bind_host, bind_port = host or rapport.settings.host, port or rapport.settings.port
    sys.stdout.write("\nTry it:\n" + "\n".join(tour(result, f"http://{bind_host}:{bind_port}")) + "\n")
    sys.stdout.flush()
    if not serve_after:
        rapport.close()
        return
    from rapport.api.server import serve as run
    from rapport.demo.sink import DEFAULT_PORT, start_sink

    mail = rapport.settings.data_dir / "mail"
    try:
        sink = start_sink(mail, DEFAULT_PORT)
    except OSError as exc:
        console.print(f"[yellow]the demo SMTP sink could not listen on 127.0.0.1:{DEFAULT_PORT} ({exc}); "
                      "journey emails wait and retry until something accepts them there[/yellow]")
        sink = None
    else:
        console.print(f"journey emails go to a local SMTP sink on 127.0.0.1:{DEFAULT_PORT}, kept in {mail}/ "
                      f"(read one with: cat \"$(ls -d {mail}/*.eml | tail -1)\")")
    try:
        run(rapport, bind_host, bind_port)
    finally:
        if sink is not None:
            sink.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
