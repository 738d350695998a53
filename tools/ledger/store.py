"""The ledger: every study, trial and timing event in one SQLite file (WAL mode, sqlite-utils).

Why SQLite: one file a user can copy, query and reopen; WAL lets a reader (``asap show``, a
dashboard) look while a tuner writes; each state change is one transaction, so a crash leaves
either the old row or the new one, never half of it.

Example::

    ledger = Ledger("runs.db")
    study = ledger.create_study("demo", space, metric="val_accuracy", direction="maximize")
    tid = study.start_trial({"lr": 0.01}, tool="optuna:tpe")
    study.report(tid, step=1, value=0.8)
    study.finish_trial(tid, status="complete", metrics={"val_accuracy": 0.91})
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from asap.tools.hpo.space import Space
from asap.tools.ledger.file import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    check_ledger_path,
)
from asap.tools.ledger.study import LedgerError, Study
from asap.tools.types import DEFAULT_DB, STUDY_NAME, Direction

__all__ = ["DEFAULT_DB", "Ledger", "check_ledger_path"]



def space_difference(old: Space, new: Space) -> str:
    """What differs between two spaces, in words ("" when they are the same)."""
    a, b = old.to_dict(), new.to_dict()
    parts = [f"'{k}' {'added' if k not in a else 'removed' if k not in b else f'{a[k]} -> {b[k]}'}"
             for k in sorted(set(a) | set(b), key=lambda k: (k not in a, k)) if a.get(k) != b.get(k)]
    return "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")


@retry(retry=retry_if_exception(lambda e: "database is locked" in str(e)), reraise=True,
       stop=stop_after_attempt(6), wait=wait_exponential(multiplier=0.05, max=1.0))
def _begin(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, retried when SQLite answers "database is locked" (a lock held past the
    busy timeout); nothing is done yet, so it is safe. The at-once "database is locked" it was
    added for came from another thread's read on the shared connection, which
    :class:`_Serialized` now keeps out of a transaction."""
    conn.execute("BEGIN IMMEDIATE")


class _Rows:
    """A statement's cursor, read whole under the ledger's lock: what sqlite-utils steps later
    (``rows_where`` iterates the cursor ``execute`` returned) is then a list, not a cursor on
    the shared connection."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.description = cursor.description
        self.lastrowid = cursor.lastrowid
        self.rowcount = cursor.rowcount
        self._rows = iter(cursor.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return self._rows

    def fetchone(self) -> Any:
        return next(self._rows, None)

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def fetchmany(self, size: int = 1) -> list[Any]:
        return list(itertools.islice(self._rows, size))

    def close(self) -> None:
        """Nothing to release: the rows were read when the statement ran."""


class _Serialized(sqlite_utils.Database):
    """sqlite-utils' Database on a connection that several threads share, each statement and
    each of its transactions taken whole under the ledger's lock. Why: sqlite-utils wraps a
    read in a savepoint and a write in BEGIN ... COMMIT, deciding from ``in_transaction`` first;
    interleaved with another thread's transaction on the same connection, a failed statement
    rolled back that thread's transaction (which then failed with "cannot commit - no
    transaction is active"), and a read's savepoint made another thread's transaction look
    nested, so it wrote without BEGIN IMMEDIATE ("database is locked" at once). A query's rows
    are read under the lock too, every statement's whole (CPython's sqlite3 stepping one cursor
    while another thread runs a statement on the connection raised SystemError)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._lock = lock  # before sqlite-utils' own set-up statements
        super().__init__(conn)

    def executescript(self, sql: str) -> _Rows:
        with self._lock:
            return _Rows(super().executescript(sql))

    def execute(self, sql: str, parameters: Any = None) -> _Rows:
        with self._lock:
            return _Rows(super().execute(sql, parameters))

    def query(self, sql: str, params: Any = None) -> Iterator[dict[str, Any]]:
        with self._lock:  # the rows read here: a cursor stepped later would race the others
            return iter(list(super().query(sql, params)))

    @contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        with self._lock, super().atomic() as db:
            yield db


class Ledger:
    """A SQLite ledger file; cheap to open, safe to share between processes (WAL + busy timeout).

    The file carries asap's application id and a schema version (SQLite's header fields): any
    other file is refused unchanged, an older ledger is migrated in one transaction on open.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0,
                 readonly: bool = False) -> None:
        path = check_ledger_path(path, write=not readonly)
        self.path = path
        self._lock = threading.RLock()  # one connection, shared by the supervisor threads
        try:
            if readonly and path.exists() and str(path) != ":memory:":
                self._open_readonly(busy_timeout_s)
            else:
                self._open(busy_timeout_s)
            # A ledger read as it is may predate the reports table (schema 1).
            self.has_reports = self.db["reports"].exists()
        except sqlite3.DatabaseError as exc:  # read-only file, full disk, locked for good
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from None

    @retry(retry=retry_if_exception(lambda e: "disk I/O error" in str(e)), reraise=True,
           stop=stop_after_attempt(12), wait=wait_exponential(multiplier=0.05, max=2.0))
    def _open(self, busy_timeout_s: float) -> None:
        """Connect, switch to WAL, check the schema. Retried on "disk I/O error", which SQLite
        reports while another process's closing connection removes the WAL files."""
        conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, check_same_thread=False,
                               isolation_level=None)
        try:
            self.db = _Serialized(conn, self._lock)
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if str(self.path) != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._ensure_schema()
        except sqlite3.DatabaseError:
            conn.close()
            raise

    def _open_readonly(self, busy_timeout_s: float) -> None:
        """Read without writing anything (``asap show`` on a ledger someone else owns, or in a
        folder this user cannot write): SQLite's read-only mode, and ``immutable`` where not
        even its lock files can be made (nothing may then write it meanwhile)."""
        frozen = "&immutable=1" if not os.access(self.path.parent, os.W_OK) else ""
        conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro{frozen}", uri=True,
                               timeout=busy_timeout_s, check_same_thread=False,
                               isolation_level=None)
        self.db = _Serialized(conn, self._lock)
        self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")

    def _ensure_schema(self) -> None:
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if self.db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                version = 0  # new, or written before versions (check_ledger_path vetted it)
            for name, (columns, pk) in SCHEMA.items():
                table = self.db.table(name)
                if not table.exists():
                    table.create(columns, pk=pk, not_null={pk} if pk == "name" else None)
            self.db["trials"].create_index(["study", "number"], unique=True, if_not_exists=True)
            self.db["timing"].create_index(["study", "kind"], if_not_exists=True)
            self.db["reports"].create_index(["study", "trial_id"], if_not_exists=True)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    self.db.execute(statement)
            if version != SCHEMA_VERSION:
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def held_here(self) -> bool:
        """Whether this thread is inside a ledger call (holds its lock). An exception raised
        into it asynchronously (a signal handler's KeyboardInterrupt) can land at the start of
        a context manager's ``__exit__`` and leave the lock held for as long as the exception
        is kept, so no other thread could write again."""
        return self._lock._is_owned()  # noqa: SLF001 - RLock's own test, as Condition uses it

    def wait_free(self) -> None:
        """Return once no other thread is inside a ledger call."""
        with self._lock:
            pass

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: writers queue on the lock instead of failing mid-way."""
        conn = self.db.conn
        with self._lock:
            if conn.in_transaction:  # nested: the outer transaction decides
                yield
                return
            _begin(conn)
            try:
                yield
            except BaseException:
                if conn.in_transaction:  # SQLite itself rolls back on some errors (a full disk)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- studies --------------------------------------------------------------------------------
    def create_study(self, name: str, space: Space, *, metric: str, direction: Direction,
                     workload: str = "", meta: dict[str, Any] | None = None) -> Study:
        if direction not in ("minimize", "maximize"):
            raise LedgerError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        if not STUDY_NAME.match(name or ""):
            raise LedgerError(f"{name!r} is not a study name: use up to 128 letters, digits, "
                              "'.', '_' or '-', starting with a letter or digit")
        with self.transaction():
            if self.db["studies"].count_where("name = ?", [name]):
                raise LedgerError(f"study '{name}' already exists in {self.path}")
            self.db["studies"].insert({
                "name": name, "space": space.to_json(), "metric": metric, "direction": direction,
                "workload": workload, "created_at": time.time(), "meta": json.dumps(meta or {}),
            })
        return Study(self, name)

    def open_or_create(self, name: str, space: Space, *, metric: str, direction: Direction,
                       workload: str = "") -> Study:
        """The study ``name``: created when new, else opened to resume.

        Two processes may create it at once: the loser joins the winner's study. A study that
        tunes another workload is refused, so a typo in ``--study`` never mixes two workloads.
        """
        if not self.has_study(name):
            try:
                return self.create_study(name, space, metric=metric, direction=direction,
                                         workload=workload)
            except LedgerError:  # another process created it a moment ago: join it
                if not self.has_study(name):
                    raise
        study = self.open_study(name)
        if study.workload and workload and study.workload != workload:
            raise LedgerError(f"study '{name}' tunes {study.workload}, not {workload}; "
                              "pick another study name")
        if (diff := space_difference(study.space, space)):
            raise LedgerError(f"study '{name}' was started with another search space ({diff}); "
                              "resume it with its own space, or pick another study name")
        return study

    def open_study(self, name: str) -> Study:
        if not self.db["studies"].count_where("name = ?", [name]):
            raise LedgerError(f"no study named '{name}' in {self.path}")
        return Study(self, name)

    def find_study(self, name: str) -> Study:
        """The study a person means by ``name``: that study, else the one a workload reference
        names (``hpobench:australian`` is the study ``hpobench-australian``); otherwise a
        :class:`LedgerError` naming the closest study names there are."""
        import difflib

        from asap.tools.types import safe_name
        for candidate in (name, safe_name(name)):
            if self.has_study(candidate):
                return Study(self, candidate)
        names = self.study_names()
        close = difflib.get_close_matches(safe_name(name), names, n=3, cutoff=0.5)
        hint = (f"; did you mean {', '.join(repr(c) for c in close)}?" if close else
                f"; it has {', '.join(repr(n) for n in names[:5])}" if names else
                "; it has no study yet")
        raise LedgerError(f"no study named '{name}' in {self.path}{hint}")

    def has_study(self, name: str) -> bool:
        return bool(self.db["studies"].count_where("name = ?", [name]))

    def delete_study(self, name: str) -> None:
        """Remove a study and everything recorded for it, in one transaction (evals redo cells)."""
        with self.transaction():
            for table in ("trials", "timing", "events", "reports"):
                self.db.execute(f"DELETE FROM {table} WHERE study = ?", [name])
            self.db.execute("DELETE FROM studies WHERE name = ?", [name])

    def study_names(self) -> list[str]:
        return [r["name"] for r in self.db["studies"].rows_where(order_by="created_at")]

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the ledger file, so the file alone is the
        whole ledger (a user copies ``asap.db``, not its ``-wal`` beside it, where a session's
        trials otherwise stay: docs/ledger.md). Passive: it waits for no other connection
        (another session on the same ledger), and leaves in the log only what a reader still
        holds open, until the next checkpoint."""
        if str(self.path) != ":memory:":
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.db.conn.close()
