"""``rapport demo``: a workspace with the demo resources and a generated shop, loaded the way real data arrives.

Messages go through the tracking API's path (``parse_message``, tracking plans, ``Rapport.ingest``)
in batches of about 500, several in flight so reading overlaps committing; unsubscribe-link
withdrawals go through the consent service once the person's messages are stored. The
generation's progress is saved in the ``imports`` table after each batch, so an interrupted demo
continues where it stopped (same seed: same people, same message ids).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import resources as package_files
from urllib.parse import quote

from rapport.api.app import run_backfills
from rapport.clock import seeded_rng
from rapport.consent import service as consent_service
from rapport.core import Rapport
from rapport.demo import experiment
from rapport.demo.shop import Shop, Withdrawal
from rapport.errors import RapportError
from rapport.ingestion.model import IngestResult, IngestTally, Message
from rapport.ingestion.parse import ItemInvalid, parse_message
from rapport.ingestion.plans import check_plans
from rapport.models.catalog import Models
from rapport.privacy import crypto
from rapport.profiles import backfill
from rapport.profiles.service import ProfileReader
from rapport.recommendations import service as recommendations
from rapport.resources import service as resources_service
from rapport.resources.model import Change
from rapport.segments import service as segments_service
from rapport.segments.service import Reconciliation
from rapport.storage.base import Conn
from rapport.storage.sql import imports as imports_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject, WorkspaceId
from rapport.workspaces import verification

WORKSPACE = "demo"
ACTOR = "demo"
BATCH = 500
IN_FLIGHT = 4
"""Batches handed to the writer before the oldest is awaited: enough to share commits, bounded memory."""
VISITOR_EVERY = 2
"""One anonymous-only visitor per this many customers."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    customers: int = 5000
    months: int = 6
    seed: int = 42
    workspace: str = WORKSPACE
    batch_size: int = BATCH

    @property
    def source(self) -> str:
        """The name the generation's progress is saved under."""
        return f"demo:seed={self.seed},customers={self.customers},months={self.months}"


@dataclass(slots=True)
class Generation(IngestTally):
    """Counts of one generation run (``customers`` is how far it got, resumed runs included)."""

    customers: int = 0
    resumed_from: int = 0
    messages: int = 0
    rejected: int = 0
    withdrawals: int = 0
    seconds: float = 0.0
    skipped: bool = False
    """True when an earlier run already generated this demo completely."""

    @property
    def rate(self) -> float:
        """Messages stored (or deduplicated) per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    """A real demo customer to show in the tour."""

    profile_id: str
    email: str
    user_id: str | None


@dataclass(slots=True)
class DemoResult:
    workspace_id: WorkspaceId
    write_key: str
    admin_token: str
    created: bool
    changes: list[Change]
    generation: Generation
    sample: Sample | None = None
    events: int = 0
    notes: list[str] = field(default_factory=list)
    played: experiment.Played | None = None
    """The cart-offer experiment's weeks played forward (None when an earlier run did it)."""
    user_hash: str | None = None
    """The sample person's ``user_hash``, as the shop's server would hand it to the browser (``tour``)."""
    segments: list[Reconciliation] = field(default_factory=list)
    """The batch refresh of every segment after generation: members and live-vs-batch differences."""


OnProgress = Callable[[Generation, int], None]
"""Told after each committed batch: the counts so far and the number of customers in total."""


def resource_text() -> str:
    """The demo resources shipped with the package (the same files as ``examples/demo``)."""
    folder = package_files.files("rapport.demo") / "resources"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    return "\n---\n".join(f.read_text(encoding="utf-8") for f in files)


def open_workspace(rapport: Rapport, name: str = WORKSPACE) -> tuple[WorkspaceId, str, str, bool]:
    """(id, write key, admin token, created): the workspace, made if missing, with new keys if it existed."""
    row = rapport.db.read(lambda c: ws_sql.workspace_by_name(c, name))
    if row is None:
        made = rapport.create_workspace(name)
        return made.workspace_id, made.write_key, made.admin_token, True
    ws = WorkspaceId(row[0])
    # Secrets are stored hashed, so a reused workspace gets a fresh pair to print.
    return ws, rapport.create_token(ws, None, "demo", ACTOR), rapport.create_token(ws, "admin", "demo", ACTOR), False


def apply_resources(rapport: Rapport, ws: WorkspaceId) -> list[Change]:
    """Apply the demo resources and make new computed-trait series ready for events."""
    text = resource_text()
    now = rapport.clock.now_ms()
    changes = rapport.db.write(lambda c: resources_service.apply(c, ws, text, ACTOR, now))
    rapport.invalidate(ws)
    settle_series(rapport, ws)
    return changes


def settle_series(rapport: Rapport, ws: WorkspaceId) -> None:
    """Register the series the definitions read and backfill them from stored events."""
    rt = rapport.runtime(ws, fresh=True)
    rapport.db.write(lambda c: backfill.register_missing(c, rt, rapport.clock))
    while not rapport.db.write(lambda c: backfill.backfill_chunk(c, rt, rapport.keyring, rapport.clock)):
        pass


@dataclass(slots=True)
class _Batch:
    customers_done: int
    messages: int
    future: Future[IngestResult] | None
    withdrawals: list[Withdrawal]
    rejected: int


class _Loader:
    """Turns stories into committed batches, in order, and keeps the saved progress in step."""

    def __init__(self, rapport: Rapport, ws: WorkspaceId, options: DemoOptions, stats: Generation,
                 on_progress: OnProgress | None) -> None:
        self.rapport, self.ws, self.options, self.stats = rapport, ws, options, stats
        self.on_progress = on_progress
        self.raw: list[JsonObject] = []
        self.withdrawals: list[Withdrawal] = []
        self.in_flight: deque[_Batch] = deque()
        self.saves: deque[Future[None]] = deque()

    def add(self, messages: tuple[JsonObject, ...], withdrawals: tuple[Withdrawal, ...]) -> None:
        self.raw.extend(messages)
        self.withdrawals.extend(withdrawals)

    def flush(self, customers_done: int, *, force: bool = False) -> None:
        """Send what is buffered once it makes a batch (between people, so a batch holds whole stories)."""
        if len(self.raw) < self.options.batch_size and not force:
            return
        received = self.rapport.clock.now_ms()
        indexed: list[tuple[int, Message]] = []
        rejected = 0
        for index, raw in enumerate(self.raw):
            try:
                indexed.append((index, parse_message(raw, implied_type=None, received_at=received,
                                                     batch_sent_at=None, batch_context=None,
                                                     new_id=lambda: self.rapport.clock.new_id("msg"))))
            except ItemInvalid:
                rejected += 1
        accepted, quarantined, refused = check_plans(self.rapport.runtime(self.ws).plans, indexed)
        future = self.rapport.ingest(self.ws, accepted, quarantined) if accepted or quarantined else None
        self.in_flight.append(_Batch(customers_done, len(self.raw), future, self.withdrawals,
                                     rejected + len(refused)))
        self.raw, self.withdrawals = [], []
        while len(self.in_flight) >= IN_FLIGHT:
            self._finish(self.in_flight.popleft())

    def close(self, customers_done: int) -> None:
        self.flush(customers_done, force=True)
        while self.in_flight:
            self._finish(self.in_flight.popleft())
        while self.saves:
            self.saves.popleft().result()

    def _finish(self, batch: _Batch) -> None:
        stats = self.stats
        if batch.future is not None:
            stats.add(batch.future.result())
        stats.messages += batch.messages
        stats.rejected += batch.rejected
        stats.customers = batch.customers_done
        stats.withdrawals += len(batch.withdrawals)
        # Queued behind the batch: the withdrawals find the stored profiles, and the saved position
        # counts only committed customers. Not awaited here, so the next batch can share its commit.
        self.saves.append(self.rapport.db.submit(self._save_job(batch)))
        while len(self.saves) > IN_FLIGHT:
            self.saves.popleft().result()
        if self.on_progress is not None:
            self.on_progress(stats, self.options.customers)

    def _save_job(self, batch: _Batch) -> Callable[[Conn], None]:
        rapport, ws, options = self.rapport, self.ws, self.options
        rt = rapport.runtime(ws)
        finished = batch.customers_done >= options.customers

        def job(conn: Conn) -> None:
            for withdrawal in batch.withdrawals:
                consent_service.record(conn, rt, rapport.keyring, rapport.clock, withdrawal.to_body(), ACTOR)
            imports_sql.save_progress(conn, ws, options.source, batch.customers_done, options.customers,
                                      rapport.clock.now_ms(), finished)

        return job


def generate(rapport: Rapport, ws: WorkspaceId, options: DemoOptions,
             on_progress: OnProgress | None = None) -> Generation:
    """Generate the shop into ``ws`` (continuing an interrupted run; nothing to do when one finished)."""
    saved = rapport.db.read(lambda c: imports_sql.load_progress(c, ws, options.source))
    if saved is not None and saved[2] is not None:
        return Generation(customers=saved[0], resumed_from=saved[0], skipped=True)
    start = saved[0] if saved is not None else 0
    stats = Generation(customers=start, resumed_from=start)
    began = rapport.clock.monotonic()
    shop = Shop(seeded_rng(options.seed), rapport.clock.now_ms(), options.months)
    loader = _Loader(rapport, ws, options, stats, on_progress)
    for n in range(options.customers):
        # Earlier people are generated again (the generator is sequential) but not sent.
        story = shop.customer(n)
        visitor = shop.visitor(n) if n % VISITOR_EVERY == 0 else None
        if n < start:
            continue
        loader.add(story.messages, story.withdrawals)
        if visitor is not None:
            loader.add(visitor.messages, ())
        loader.flush(n + 1)
    loader.close(options.customers)
    stats.seconds = rapport.clock.monotonic() - began
    return stats


def find_sample(rapport: Rapport, ws: WorkspaceId) -> Sample | None:
    """The customer with the most orders kept with consent, to show in the tour."""
    rt = rapport.runtime(ws)

    def read(conn: Conn) -> Sample | None:
        row = conn.one(
            "SELECT profile_id, count(*) AS n FROM events WHERE workspace_id = ? AND name = 'Order Completed'"
            " AND restricted = 0 AND user_id IS NOT NULL GROUP BY profile_id ORDER BY n DESC, profile_id LIMIT 1",
            (ws,))
        if row is None:
            return None
        reader = ProfileReader(conn, rt, rapport.keyring)
        profile_id = reader.live_id(str(row[0]))
        identifiers = reader.identifiers(profile_id)
        emails = identifiers.get("email") or []
        if not emails:
            return None
        user_ids = identifiers.get("user_id") or []
        return Sample(profile_id, emails[0], user_ids[0] if user_ids else None)

    return rapport.db.read(read)


def run_demo(rapport: Rapport, options: DemoOptions, on_progress: OnProgress | None = None) -> DemoResult:
    """Everything ``rapport demo`` does before serving: workspace, resources, shop, backfills, the cart-offer
    experiment's weeks, the propensity models and the recommendation tables."""
    ws, write_key, admin_token, created = open_workspace(rapport, options.workspace)
    changes = apply_resources(rapport, ws)
    generation = generate(rapport, ws, options, on_progress)
    run_backfills(rapport)
    played = experiment.play(rapport, ws)
    notes = measurement(rapport, ws, played)
    rt = rapport.runtime(ws, fresh=True)
    reconciled = segments_service.refresh_database(rapport.db, rt, rapport.clock)
    result = DemoResult(ws, write_key, admin_token, created, changes, generation, notes=notes,
                        played=None if played.skipped else played, segments=reconciled)
    result.sample = find_sample(rapport, ws)
    if result.sample is not None and result.sample.user_id:
        result.user_hash = user_hash(rapport, ws, result.sample.user_id)
    result.events = rapport.event_count(ws)
    return result


def user_hash(rapport: Rapport, ws: WorkspaceId, user_id: str) -> str:
    """What the shop's server computes for a browser asking for ``user_id``'s decisions with the write key."""
    rt = rapport.runtime(ws)
    return crypto.user_hash(verification.secret(rapport.keyring, rt), user_id)


def measurement(rapport: Rapport, ws: WorkspaceId, played: experiment.Played) -> list[str]:
    """After the shop is loaded and the cart-offer experiment played forward: train the models that have no
    version yet (writing their scores back) and build the recommendation tables. Returns what was done, in words."""
    notes: list[str] = []
    if not played.skipped:
        notes.append(f"cart-offer experiment: {played.exposed:,} people reached the offer split, "
                     f"{played.orders:,} ordered afterwards")
    models = Models(rapport, ws)
    for entry in models.catalog():
        if entry["versions"]:
            continue
        try:
            out = models.train(str(entry["name"]), ACTOR)
        except RapportError as exc:  # e.g. too little data in a tiny demo: the shop still serves
            notes.append(f"model {entry['name']}: not trained ({exc.message})")
            continue
        auc = out["metrics"].get("auc")
        notes.append(f"model {entry['name']} v{out['version']}: test AUC "
                     f"{f'{auc:.3f}' if isinstance(auc, float) else 'n/a'}, {out.get('scored', 0):,} people scored")
    built = recommendations.build_now(rapport, ws)
    notes.append(f"recommendations: {built.products:,} products, {built.pairs:,} bought-together pairs")
    return notes


def tour(result: DemoResult, base_url: str) -> list[str]:
    """Commands to try against the running demo, with its keys filled in."""
    token, key = result.admin_token, result.write_key
    auth = f'-H "Authorization: Bearer {token}"'
    lines = [f"export RAPPORT_URL={base_url}"]
    sample = result.sample
    if sample is not None:
        lines += [
            "# the unified profile of a real demo customer, looked up by email",
            f'curl -s {auth} "$RAPPORT_URL/api/v1/profiles/lookup?email={quote(sample.email)}"',
            "# their latest events",
            f'curl -s {auth} "$RAPPORT_URL/api/v1/profiles/{sample.profile_id}/events?limit=10"',
            "# their consent history (every ledger entry, with legal basis and source)",
            f'curl -s {auth} "$RAPPORT_URL/api/v1/profiles/{sample.profile_id}/consent"',
        ]
    user = sample.user_id if sample is not None and sample.user_id else "usr_tour"
    lines += [
        "# send an event the way a Segment SDK does (write key as the Basic user name)",
        f"curl -s -u '{key}:' -H 'Content-Type: application/json' -d "
        f"""'{{"userId": "{user}", "event": "Product Viewed", "properties": {{"product_id": "prd_001"}}}}' """
        '"$RAPPORT_URL/v1/track"',
        "# the computed traits and whether each one is live",
        f'curl -s {auth} "$RAPPORT_URL/api/v1/computed-traits"',
        "# the segments, their members, and why a person is in one or not",
        f'curl -s {auth} "$RAPPORT_URL/api/v1/segments"',
        f'curl -s {auth} "$RAPPORT_URL/api/v1/segments/repeat_buyers/members?limit=5"',
    ]
    if sample is not None:
        lines.append(f'curl -s {auth} "$RAPPORT_URL/api/v1/segments/high_value/explain?profile_id={sample.profile_id}"')
    lines += [
        "# who a rule would select, before saving it",
        f"curl -s {auth} -H 'Content-Type: application/json' -d "
        """'{"rule": "computed.order_count >= 3 and count(\\"Email Opened\\", within=30d) >= 1", "limit": 3}' """
        '"$RAPPORT_URL/api/v1/segments/preview"',
        "# the home-page hero and the best offer for this customer, as a browser gets them (write key; the shop's"
        " server signs the user id: user_hash)",
        f"curl -s -u '{key}:' -H 'Content-Type: application/json' -d "
        f"""'{{"user_id": "{user}", "user_hash": "{result.user_hash or ''}", """
        """"placements": ["home_hero", "offers"]}' """ '"$RAPPORT_URL/api/v1/decide"',
        "# the same with an admin token: why, how sure, the model's top reasons",
        f"curl -s {auth} -H 'Content-Type: application/json' -d "
        f"""'{{"user_id": "{user}", "placements": ["offers"]}}' """ '"$RAPPORT_URL/api/v1/decide"',
        "# the cart-offer experiment's results (and a chart of lifts with intervals)",
        f'curl -s {auth} "$RAPPORT_URL/api/v1/experiments/cart_offer_test/results"',
        f'curl -s {auth} -o cart_offer_test.png "$RAPPORT_URL/api/v1/experiments/cart_offer_test/results.png"',
    ]
    return lines
