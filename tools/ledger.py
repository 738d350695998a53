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

from asap.tools.space import Space
from asap.tools.study import LedgerError, Study
from asap.tools.types import STUDY_NAME, Direction

__all__ = ["DEFAULT_DB", "Ledger", "check_ledger_path"]

DEFAULT_DB = "asap.db"  # the ledger every command reads and writes unless told another


_SCHEMA = {
    "studies": ({"name": str, "space": str, "metric": str, "direction": str, "workload": str,
                 "created_at": float, "meta": str}, "name"),
    "trials": ({"id": int, "study": str, "number": int, "config": str, "tool": str, "status": str,
                "value": float, "metrics": str, "intermediate": str, "error": str, "fidelity": int,
                "started_at": float, "ended_at": float, "duration": float, "meta": str}, "id"),
    "timing": ({"id": int, "study": str, "kind": str, "start": float, "end": float,
                "duration": float, "trial_number": int, "prompt_tokens": int,
                "cached_tokens": int, "completion_tokens": int, "detail": str}, "id"),
    "events": ({"id": int, "study": str, "kind": str, "at": float, "detail": str}, "id"),
    # A running trial's intermediate values, one row per report (appended in O(1)); they move
    # into the trial's ``intermediate`` column when it finishes.
    "reports": ({"id": int, "study": str, "trial_id": int, "step": int, "value": float}, "id"),
}


APPLICATION_ID = 0x41534150  # "ASAP" in SQLite's application_id header field
SCHEMA_VERSION = 2  # PRAGMA user_version; bump with a step in _MIGRATIONS
_MIGRATIONS: dict[int, list[str]] = {
    # version -> the statements that bring a ledger of the version before it up to it.
    # 0 -> 1: ledgers written before the schema had a version: the same tables, now stamped.
    1: [],
    # 1 -> 2: the reports table (created with the others, from _SCHEMA).
    2: [],
}


_CHECKPOINT_TABLES = {"checkpoints", "writes"}  # LangGraph's SqliteSaver: the chat's threads


def check_ledger_path(path: str | Path, *, write: bool = True) -> Path:
    """Refuse a path that cannot be, or is not, an asap ledger, without writing anything; with
    ``write``, also one this process cannot write (an immutable or read-only file or folder).

    Why before anything else: a session validates everything (this, the endpoint, the model)
    before it creates the ledger, so a refusal leaves no file behind and calls no LLM.
    """
    path = Path(path)
    if str(path) == ":memory:":
        return path
    if path.is_dir():
        raise LedgerError(f"{path} is a directory; --db names the ledger file (e.g. {path}/asap.db)")
    if path.exists() and not path.is_file():  # /dev/full, a FIFO: SQLite would write beside it
        raise LedgerError(f"{path} is not a regular file; --db names the ledger file")
    if not path.parent.exists():
        raise LedgerError(f"the directory {path.parent} for the ledger does not exist")
    if path.exists() and path.stat().st_size:
        _identify(path)
        if write and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise LedgerError(f"the ledger {path} is read-only here (the file or its folder "
                              "cannot be written); copy it somewhere writable or pass another "
                              "--db")
    elif not os.access(path.parent, os.W_OK):
        raise LedgerError(f"cannot create the ledger {path}: the directory {path.parent} is "
                          "not writable")
    return path


def _identify(path: Path) -> int:
    """The schema version of the asap ledger at ``path`` (0: written before versions); a file
    that is not one is refused, unchanged, with what it is instead."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(b"SQLite format 3\x00"):
        raise LedgerError(f"{path} is not an asap ledger (not a SQLite database); "
                          "pass another --db")
    # The header's fields can be stale while a writer's WAL holds newer pages: ask SQLite, read
    # only (it then sees the WAL), and fall back to the header when that cannot open.
    app_id, version = int.from_bytes(header[68:72], "big"), int.from_bytes(header[60:64], "big")
    tables: set[str] = set()
    cols: set[str] = set()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            cols = {r[1] for r in conn.execute("PRAGMA table_info(studies)")}
        finally:
            conn.close()
    except sqlite3.OperationalError:
        pass  # e.g. a WAL file without its shared-memory index in a read-only directory
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{path} cannot be read as a SQLite database ({exc})") from None
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise LedgerError(f"{path} was written by a newer asap (ledger schema {version}, this "
                              f"one reads up to {SCHEMA_VERSION}); upgrade asap-hpo")
        return version
    if app_id:
        raise LedgerError(f"{path} is another application's SQLite database "
                          f"(application id {app_id:#x}); pass another --db")
    # No id: a ledger from before versions (adopted, as is a chat file that holds LangGraph's
    # checkpoints and no study yet), or someone else's database.
    ours = set(_SCHEMA["studies"][0]) <= cols and "trials" in tables
    if tables and not ours and not tables <= _CHECKPOINT_TABLES:
        raise LedgerError(f"{path} is another application's SQLite database (tables: "
                          f"{', '.join(sorted(tables))}); asap keeps its own ledger: pass "
                          "another --db")
    return 0


def space_difference(old: Space, new: Space) -> str:
    """What differs between two spaces, in words ("" when they are the same)."""
    a, b = old.to_dict(), new.to_dict()
    parts = [f"'{k}' {'added' if k not in a else 'removed' if k not in b else f'{a[k]} -> {b[k]}'}"
             for k in sorted(set(a) | set(b), key=lambda k: (k not in a, k)) if a.get(k) != b.get(k)]
    return "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")


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
        """Connect, switch to WAL, check the schema. Retried on "disk I/O error": seen when a
        process opens a ledger while another connection on it closes (which checkpoints the WAL
        and removes its files), gone on a later try. Four tries within ~0.4 s were not enough
        for an eval grid beside a reader on a loaded machine; twelve span ~12 s."""
        conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, check_same_thread=False,
                               isolation_level=None)
        try:
            self.db = sqlite_utils.Database(conn)
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
        conn = sqlite3.connect(f"file:{self.path}?mode=ro{frozen}", uri=True,
                               timeout=busy_timeout_s, check_same_thread=False,
                               isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")

    def _ensure_schema(self) -> None:
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if self.db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                version = 0  # new, or written before versions (check_ledger_path vetted it)
            for name, (columns, pk) in _SCHEMA.items():
                table = self.db.table(name)
                if not table.exists():
                    table.create(columns, pk=pk, not_null={pk} if pk == "name" else None)
            self.db["trials"].create_index(["study", "number"], unique=True, if_not_exists=True)
            self.db["timing"].create_index(["study", "kind"], if_not_exists=True)
            self.db["reports"].create_index(["study", "trial_id"], if_not_exists=True)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    self.db.execute(statement)
            if version != SCHEMA_VERSION:
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: writers queue on the lock instead of failing mid-way."""
        conn = self.db.conn
        with self._lock:
            if conn.in_transaction:  # nested: the outer transaction decides
                yield
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
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

    def close(self) -> None:
        self.db.conn.close()
