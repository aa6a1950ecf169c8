"""One robust way to open the SQLite caches (responses and embedding vectors).

A cache is an optimisation, never a reason for a run to crash: the connection waits for
another process's write lock (busy timeout) and uses WAL so readers never block writers. A
file that is not a database, or is malformed, is moved aside as `<name>.damaged-<timestamp>`
(said on stderr, naming both files) and a fresh cache is opened; if even that fails, or an
error strikes later (a lock held past the timeout, damage found mid-run), the store carries
on uncached: reads miss and writes are skipped, each said once on stderr.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0
# host parameters per INSERT statement: SQLite's limit before 3.32 (32,766 since)
PARAMS_PER_INSERT = 999


def _warn(message: str) -> None:
    print(f"evalkit: warning: {message}", file=sys.stderr, flush=True)


def _connect(path: Path, schema: str, busy_timeout_s: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False,
                         isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(schema)
        status = db.execute("PRAGMA quick_check").fetchone()
        if status is None or status[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {status[0] if status else 'no answer'}")
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(target.with_name(target.name + suffix))
    return target


class SqliteStore:
    """A locked SQLite connection that degrades to "no cache" instead of raising."""

    def __init__(self, path: Path | str, *, schema: str,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._db = self._open(schema, busy_timeout_s)

    def _open(self, schema: str, busy_timeout_s: float) -> sqlite3.Connection | None:
        try:
            return _connect(self.path, schema, busy_timeout_s)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                _warn(f"{self.path}: {exc} (held by another process for over "
                      f"{busy_timeout_s:g} s); continuing without this cache")
                return None
            error: Exception = exc
        except sqlite3.DatabaseError as exc:
            error = exc
        try:
            moved = _move_aside(self.path)
        except OSError as exc:
            _warn(f"{self.path}: damaged cache ({error}) and it cannot be moved aside "
                  f"({exc}); continuing without this cache; delete the file to rebuild it")
            return None
        _warn(f"{self.path}: damaged cache ({error}); moved it to {moved} and started "
              f"a fresh cache")
        try:
            return _connect(self.path, schema, busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            _warn(f"{self.path}: cannot open a fresh cache ({exc}); continuing without it")
            return None

    def _failed(self, action: str, exc: sqlite3.DatabaseError) -> None:
        if action not in self._warned:
            self._warned.add(action)
            _warn(f"{self.path}: cache {action} failed ({exc}); the run continues, "
                  f"{'treating it as a miss' if action == 'read' else 'without storing'}")

    def fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of a query, or None on no row, no cache or any database error."""
        with self._lock:
            if self._db is None:
                return None
            try:
                return self._db.execute(sql, params).fetchone()
            except sqlite3.DatabaseError as exc:
                self._failed("read", exc)
                return None

    def fetchall(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of a query; [] on no cache or any database error (as `fetchone`)."""
        with self._lock:
            if self._db is None:
                return []
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                self._failed("read", exc)
                return []

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run a write; a database error (a lock past the timeout, damage) skips it."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute(sql, params)
            except sqlite3.DatabaseError as exc:
                self._failed("write", exc)

    def insert_many(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """`INSERT OR REPLACE` every row into `table`, in one transaction; a database error
        skips the lot, said once, like `execute`.

        Rows go as many to a statement as `PARAMS_PER_INSERT` allows (`VALUES (?, ?), ...`),
        not one statement each: sqlite3 releases the GIL around every step, so a writer thread
        stepping once per row made the event loop's thread hand the GIL over once per row,
        which cost the loop more CPU than the inserts themselves."""
        if not rows:
            return
        width = len(rows[0])
        per = max(1, PARAMS_PER_INSERT // width)
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("BEGIN")
                for i in range(0, len(rows), per):
                    part = rows[i:i + per]
                    marks = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(part))
                    self._db.execute(f"INSERT OR REPLACE INTO {table} VALUES {marks}",
                                     tuple(v for row in part for v in row))
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._failed("write", exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
