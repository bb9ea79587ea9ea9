"""Architecture rules checked on the source: injected time and randomness, bound SQL values, workspace guards."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rapport"
SQL_MODULES = sorted((PACKAGE / "storage" / "sql").glob("*.py"))

WALL_CLOCK_AND_RANDOM = re.compile(
    r"\bdatetime\.(?:now|utcnow|today)\b|\bdate\.today\b|\btime\.time(?:_ns)?\(|(?<![\w.])random\.")
"""What only ``rapport/clock.py`` may use: logic takes a ``Clock`` so tests can pin time and ids."""


def python_files() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def test_the_checks_see_the_package() -> None:
    files = [p.relative_to(PACKAGE).as_posix() for p in python_files()]
    assert "clock.py" in files and "core.py" in files and len(files) > 50
    assert [p.name for p in SQL_MODULES if p.name != "__init__.py"]


def test_only_the_clock_reads_time_or_randomness() -> None:
    offenders = []
    for path in python_files():
        if path == PACKAGE / "clock.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if WALL_CLOCK_AND_RANDOM.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert offenders == [], "use the injected Clock (rapport/clock.py) instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("line", [
    "now = datetime.now(UTC)", "t = time.time()", "x = random.random()", "n = time.time_ns()",
    "d = date.today()", "import random; random.choice(xs)",
])
def test_the_clock_rule_catches(line: str) -> None:
    assert WALL_CLOCK_AND_RANDOM.search(line)


@pytest.mark.parametrize("line", ["started = time.perf_counter()", "self.clock.now_ms()", "os.urandom(8)",
                                  "secrets.token_urlsafe(32)", "self._rng.getrandbits(64)"])
def test_the_clock_rule_allows(line: str) -> None:
    assert not WALL_CLOCK_AND_RANDOM.search(line)


# --- SQL is built from placeholders and identifiers only ---------------------------------------------

SAFE_INTERPOLATIONS = frozenset({
    "marks", "series_marks",  # ",".join("?" * n): placeholders
    "cond",           # " OR ".join(["(type = ? AND value_key = ?)"] * n): placeholders
    "table",          # a table name from a constant tuple
    "column",         # a column name from a constant tuple
    "earlier", "later",  # constant SQL conditions on columns
    "dialect",        # dialect.greatest/least over column expressions
})
"""Lower-case names an f-string in ``rapport/storage/sql`` may interpolate; UPPER_CASE constants are allowed
too. Add a name only after checking it can hold nothing but placeholders, identifiers or constant SQL."""

PLACEHOLDER_ONLY = re.compile(r"^[\s?,()=<>A-Za-z_]*$")
"""Literal text allowed in the expressions that build ``marks`` and ``cond``: no quotes, no values."""


def sql_problems(source: str, name: str) -> list[str]:
    """Ways SQL in ``source`` could carry a value that is not a bound parameter."""
    problems: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            for i, part in enumerate(parts):
                if not isinstance(part, ast.FormattedValue):
                    continue
                before = parts[i - 1] if i > 0 else None
                after = parts[i + 1] if i + 1 < len(parts) else None
                if (isinstance(before, ast.Constant) and str(before.value).endswith(("'", '"'))) or (
                        isinstance(after, ast.Constant) and str(after.value).startswith(("'", '"'))):
                    problems.append(f"{where}: a quoted value '{{...}}' in SQL; bind it with ? instead")
                if part.conversion != -1 or part.format_spec is not None:
                    problems.append(f"{where}: a formatted value (!r, !s or :spec) in SQL; bind it with ? instead")
                root = part.value
                while isinstance(root, ast.Attribute | ast.Call):
                    root = root.value if isinstance(root, ast.Attribute) else root.func
                if not isinstance(root, ast.Name):
                    problems.append(f"{where}: interpolates {ast.unparse(part.value)!r}; only names are allowed")
                elif not (root.id.isupper() or root.id in SAFE_INTERPOLATIONS):
                    problems.append(f"{where}: interpolates {root.id!r}, which is not a known identifier or "
                                    "placeholder list (see SAFE_INTERPOLATIONS)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                and isinstance(node.func.value, ast.Constant | ast.JoinedStr):
            problems.append(f"{where}: str.format() builds SQL; bind values with ? instead")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str):
            problems.append(f"{where}: %-formatting builds SQL; bind values with ? instead")
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("marks", "cond")
                                                  for t in node.targets):
            for constant in ast.walk(node.value):
                if isinstance(constant, ast.Constant) and isinstance(constant.value, str) \
                        and not PLACEHOLDER_ONLY.match(constant.value):
                    problems.append(f"{where}: placeholder list built from {constant.value!r}")
    return problems


@pytest.mark.parametrize("path", SQL_MODULES, ids=lambda p: p.name)
def test_sql_binds_every_value(path: Path) -> None:
    assert sql_problems(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize("snippet", [
    "def f(conn, name):\n    conn.all(f\"SELECT * FROM events WHERE name = '{name}'\")",
    "def f(conn, ws):\n    conn.all(f'SELECT * FROM events WHERE workspace_id = \"{ws}\"')",
    "def f(conn, n):\n    conn.all(f'SELECT * FROM events LIMIT {n}')",
    "def f(conn, v):\n    conn.all(f'SELECT * FROM events WHERE name = {v!r}')",
    "def f(conn, v):\n    conn.all('SELECT * FROM events WHERE name = {}'.format(v))",
    "def f(conn, v):\n    conn.all('SELECT * FROM events WHERE name = %s' % v)",
    "def f(conn, values):\n    marks = ','.join(\"'\" + v + \"'\" for v in values)",
])
def test_the_sql_rule_catches(snippet: str) -> None:
    assert sql_problems(snippet, "snippet")


# --- every query of a tenant table, anywhere in the package, is guarded by its workspace ---------------

TENANT_TABLE = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(credentials|profiles|identifiers|merges|merge_blocks|identity_conflicts|"
    r"events|traits|trait_values|buckets|bucket_values|series|consent_ledger|resources|quarantine|audit_log|imports|"
    r"segment_history|segment_timers|segment_refreshes|journey_enrollments|journey_timers|journey_sends|"
    r"journey_entries|journey_inbox|inbox_messages|offline_tasks|suppressions|email_engagement|"
    r"journey_schedule_runs|journey_migrations|journey_moves|experiment_assignments)\b",
    re.IGNORECASE)
UNGUARDED_BY_DESIGN = {("storage/sql/workspaces.py", "credential_by_hash"),
                       ("storage/sql/journeys.py", "due_timers"), ("storage/sql/journeys.py", "due_sends"),
                       ("storage/sql/journeys.py", "next_due")}
"""A secret is what tells us the workspace, so its lookup cannot be keyed by one; the journey
scheduler's queries find due work across workspaces (each row they return carries its workspace,
and every later query on it is guarded)."""
CONN_METHODS = {"execute", "executemany", "all", "one", "value"}


def sql_text(node: ast.expr, constants: dict[str, str]) -> str:
    """The literal text of a SQL expression (interpolations and unknown parts become ``{}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(sql_text(v, constants) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return sql_text(node.left, constants) + sql_text(node.right, constants)
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return "{}"


def guarded(sql: str) -> bool:
    """An insert names the workspace column; anything that reads or changes rows filters on it."""
    reads = re.search(r"\b(?:FROM|UPDATE)\s+\w", sql, re.IGNORECASE) and not re.match(r"\s*INSERT\b.*\bVALUES\b",
                                                                                   sql, re.IGNORECASE | re.DOTALL)
    if reads:
        return re.search(r"\bworkspace_id\s*(?:=|IN\b)", sql, re.IGNORECASE) is not None
    return re.search(r"\(\s*workspace_id\b", sql) is not None


def unguarded_queries(source: str, name: str) -> list[str]:
    tree = ast.parse(source)
    constants = {t.id: sql_text(n.value, {}) for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}
    found = []
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        if (name, function.name) in UNGUARDED_BY_DESIGN:
            continue
        for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
            if not (isinstance(call.func, ast.Attribute) and call.func.attr in CONN_METHODS and call.args):
                continue
            text = sql_text(call.args[0], constants)
            if TENANT_TABLE.search(text) and not guarded(text):
                found.append(f"{name}:{call.lineno} ({function.name}): {' '.join(text.split())[:120]}")
    return found


def test_every_tenant_query_names_its_workspace() -> None:
    found = []
    for path in python_files():
        found += unguarded_queries(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    assert found == [], "every query of a tenant table must be guarded by workspace_id:\n" + "\n".join(found)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM events WHERE profile_id = ?",
    "SELECT workspace_id, id FROM credentials WHERE secret_hash = ?",
    "UPDATE traits SET value = ? WHERE profile_id = ?",
    "DELETE FROM buckets WHERE profile_id = ?",
    "INSERT INTO events (id, body) VALUES (?, ?)",
    "INSERT INTO traits (workspace_id, name) SELECT workspace_id, name FROM traits WHERE profile_id = ?",
])
def test_the_guard_rule_catches(sql: str) -> None:
    assert unguarded_queries(f"def leak(conn, pid):\n    return conn.all({sql!r}, (pid,))", "snippet.py")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM events WHERE workspace_id = ? AND profile_id = ?",
    "INSERT INTO events (workspace_id, id, body) VALUES (?, ?, ?) ON CONFLICT (workspace_id, id) DO NOTHING",
    "UPDATE merges SET undone_at = ? WHERE workspace_id = ? AND id = ?",
])
def test_the_guard_rule_allows(sql: str) -> None:
    assert unguarded_queries(f"def fine(conn, pid):\n    return conn.all({sql!r}, (pid,))", "snippet.py") == []
