"""Both rule engines read a written-back score alike: random score histories (including emptied scores),
random comparisons, random instants, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.conftest import apply
from rapport.core import Rapport
from rapport.ingestion.service import bucket_row
from rapport.models.service import score_bucket
from rapport.models.spec import score_series
from rapport.rules import parse
from rapport.segments.sql import compile_rule
from rapport.segments.stored import matching
from rapport.storage.sql import profiles as profiles_sql

T0 = 1_780_000_000_000
SEEN: set[str] = set()
MODEL = ("kind: Model\nname: m\ntarget: {event: Order Completed, within: 7d}\nfeatures: [orders_90d]\n"
         "write_to: m_score\n")

histories = st.lists(st.lists(st.tuples(st.integers(0, 20), st.one_of(st.none(), st.sampled_from(
    [0.0, 0.25, 0.5, 0.5000001, 0.75, 1.0]))), max_size=4), min_size=1, max_size=6)
rules = st.sampled_from(["computed.m_score > 0.5", "computed.m_score >= 0.5", "computed.m_score == 0.25",
                         "computed.m_score != 0.75", "not (computed.m_score < 0.5)", "exists(computed.m_score)",
                         "computed.m_score is null", "computed.m_score in [0, 1]",
                         "computed.m_score > 0.2 and computed.orders_90d == 0"])


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          deadline=None)
@given(people=histories, rule=rules, instant=st.integers(-1, 22))
def test_engines_agree_on_scores(store: Rapport, people: list[list[tuple[int, float | None]]],
                                 rule: str, instant: int) -> None:
    ws = store.create_workspace(f"e-{secrets.token_hex(4)}").workspace_id
    apply(store, ws, MODEL)
    rt = store.runtime(ws, fresh=True)
    sid = score_series("m").id
    ids = [f"prf_{i}" for i in range(len(people))]

    def write(conn: object) -> None:
        conn.insert_rows(  # type: ignore[attr-defined]
            "INSERT INTO profiles (workspace_id, id, merged_into, data_key, created_at, updated_at)", 6, "",
            [(ws, pid, None, b"k", 0, 0) for pid in ids])
        rows = [bucket_row(ws, pid, sid, score_bucket(score, T0 + second * 1000 + 17, version))
                for pid, history in zip(ids, people, strict=True)
                for version, (second, score) in enumerate(history, start=1)]
        # One score per profile and second: a later scoring in the same second wins as the newest version.
        latest = {(r[1], r[3]): r for r in rows}
        profiles_sql.upsert_buckets(conn, list(latest.values()))  # type: ignore[arg-type]

    store.db.write(write)
    at = T0 + instant * 1000 + 500
    node = parse(rule)
    memory = store.db.read(lambda c: matching(c, rt, node, ids, at))

    def select(conn: object) -> set[str]:
        sql, params = compile_rule(node, rt, conn.dialect, at)  # type: ignore[attr-defined]
        return {str(r[0]) for r in conn.all(sql, params)}  # type: ignore[attr-defined]

    selected = store.db.read(select)
    assert memory == selected
    SEEN.update(("some" if memory else "none",))


def test_the_examples_selected_someone_and_no_one() -> None:
    """Runs after the property test: both outcomes were exercised (a test of nothing would pass too)."""
    assert {"some", "none"} == SEEN
