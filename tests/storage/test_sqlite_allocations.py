"""SQLite runs without its process-wide allocation statistics, so threads' queries do not take turns."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from rapport.storage.sqlite import database

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the switch is made on Linux only")


def _memory_counted() -> int:
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    used, peak = ctypes.c_int64(), ctypes.c_int64()
    assert lib.sqlite3_status64(0, ctypes.byref(used), ctypes.byref(peak), 0) == 0
    return used.value


def _imported_after(prelude: str) -> str:
    code = (f"{prelude}\nfrom rapport.storage.sqlite import database\n"
            "import sqlite3\n"
            "print(database.UNSHARED_ALLOCATIONS, sqlite3.connect(':memory:').execute('SELECT 1').fetchone())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_open_connections_hold_memory_sqlite_no_longer_counts(tmp_path: Path) -> None:
    assert database.UNSHARED_ALLOCATIONS
    db = database.SqliteDatabase(str(tmp_path / "x.db"))
    try:
        db.write(lambda c: c.execute("CREATE TABLE t (a)"))
        assert db.read(lambda c: c.value("SELECT count(*) FROM t")) == 0
        assert _memory_counted() == 0  # with statistics on, each open connection counts 100 kB or more
    finally:
        db.close()


def test_the_switch_is_made_only_while_sqlite_holds_no_connection() -> None:
    assert _imported_after("") == "True (1,)"
    # A connection opened first: shutting SQLite down under it would be unsafe, so nothing changes.
    assert _imported_after("import sqlite3\nkept = sqlite3.connect(':memory:')") == "False (1,)"
