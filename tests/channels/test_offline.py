"""The offline channel on SQLite and PostgreSQL: one task per idempotency key on the channel's list, and the
CSV export of a list, quoted and safe to open in a spreadsheet."""

from __future__ import annotations

import asyncio
import csv
import io

import orjson
import pytest
from api.support import ApiClient, profile_of, track

from rapport.channels.base import Channel, Message
from rapport.channels.offline import CSV_HEADER, OfflineChannel, Task, tasks_csv
from rapport.clock import FrozenClock, parse_iso
from rapport.core import NewWorkspace, Rapport
from rapport.errors import Terminal
from rapport.storage.sql import inbox as inbox_sql
from rapport.types import HOUR


def person(client: ApiClient, ws: NewWorkspace, user_id: str) -> str:
    response = track(client, ws, "/v1/identify", {"userId": user_id})
    assert response.status_code == 200, response.text
    profile_id: str = profile_of(client, ws, user_id=user_id)["id"]
    return profile_id


def tasks(rapport: Rapport, ws: NewWorkspace, channel: str, *, open_only: bool = False) -> list[Task]:
    rows = rapport.db.read(lambda c: inbox_sql.tasks(c, ws.workspace_id, channel, open_only=open_only, limit=100))
    return [Task.from_row(r) for r in rows]


def test_a_task_is_stored_once_per_key_on_its_channels_list(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock) -> None:
    ada = person(client, workspace, "ada")
    calls: Channel = OfflineChannel(rapport.db, workspace.workspace_id, "call_list", clock)
    store = OfflineChannel(rapport.db, workspace.workspace_id, "store_visits", clock)
    message = Message("enr_1:call", ada, subject="Call Ada", text="Ask about the lamp", data={"cart_id": "c1"})
    first = asyncio.run(calls.send(message))
    clock.advance(HOUR)
    assert asyncio.run(calls.send(message)) == first
    visit = asyncio.run(store.send(Message("enr_1:visit", ada, text="Offer a demo in store")))

    [task] = tasks(rapport, workspace, "call_list")
    assert task == Task(first.provider_id, "call_list", ada, "Call Ada", "Ask about the lamp", {"cart_id": "c1"},
                        first.accepted_at, None, None)
    assert [t.id for t in tasks(rapport, workspace, "store_visits")] == [visit.provider_id]


def test_a_key_already_used_on_another_list_is_the_same_send(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock) -> None:
    ada = person(client, workspace, "ada")
    ws = workspace.workspace_id
    first = asyncio.run(OfflineChannel(rapport.db, ws, "a", clock).send(Message("k", ada, text="x")))
    again = asyncio.run(OfflineChannel(rapport.db, ws, "b", clock).send(Message("k", ada, text="x")))
    assert again == first
    assert (len(tasks(rapport, workspace, "a")), len(tasks(rapport, workspace, "b"))) == (1, 0)


def test_an_unknown_recipient_is_terminal(rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock) -> None:
    with pytest.raises(Terminal, match="no profile 'prof_gone'") as caught:
        asyncio.run(OfflineChannel(rapport.db, workspace.workspace_id, "calls", clock).send(
            Message("k", "prof_gone", text="call")))
    assert caught.value.code == "unknown_recipient"
    assert tasks(rapport, workspace, "calls") == []


CREATED = parse_iso("2026-03-02T10:00:00.250Z")
DONE = parse_iso("2026-03-03T08:30:00Z")


def parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_csv_has_a_header_iso_times_and_json_data() -> None:
    rows = [Task("task_1", "calls", "prof_1", "Call Ada", "Ask about the lamp", {"cart_id": "c1", "n": 2}, CREATED,
                 DONE, "admin_token:cred_1"),
            Task("task_2", "calls", "prof_2", None, "No title", {}, CREATED, None, None)]
    text = tasks_csv(rows)
    assert text.startswith("id,profile_id,title,body,data,created_at,done_at\r\n")
    assert parsed(text) == [
        list(CSV_HEADER),
        ["task_1", "prof_1", "Call Ada", "Ask about the lamp", '{"cart_id":"c1","n":2}', "2026-03-02T10:00:00.250Z",
         "2026-03-03T08:30:00.000Z"],
        ["task_2", "prof_2", "", "No title", "", "2026-03-02T10:00:00.250Z", ""],
    ]


def test_commas_quotes_and_line_breaks_are_quoted() -> None:
    body = 'Said "call me back", then:\nline two, and a\r\ncarriage return'
    text = tasks_csv([Task("t", "calls", "p", "Hello, Ada", body, {"note": 'a "quoted", value'}, CREATED, None, None)])
    [_, row] = parsed(text)
    assert row[2:5] == ["Hello, Ada", body, orjson.dumps({"note": 'a "quoted", value'}).decode()]
    assert '"Hello, Ada"' in text and '""call me back""' in text


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-2+3", "@SUM(A1:A2)",
                                   "\t=1+1", "\r=1+1"])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote(value: str) -> None:
    [_, row] = parsed(tasks_csv([Task("t", "calls", "p", value, value, {}, CREATED, None, None)]))
    assert row[2] == row[3] == "'" + value


@pytest.mark.parametrize("value", ["Call at 10:00", "50% off", "a=b", "'already quoted", "ok - fine"])
def test_ordinary_text_is_left_alone(value: str) -> None:
    [_, row] = parsed(tasks_csv([Task("t", "calls", "p", value, None, {}, CREATED, None, None)]))
    assert row[2] == value


def test_an_empty_list_is_just_the_header() -> None:
    assert parsed(tasks_csv([])) == [list(CSV_HEADER)]
