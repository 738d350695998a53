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
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from asap.tools.space import Space
from asap.tools.study import LedgerError, RepeatError, Study
from asap.tools.types import Direction

__all__ = ["Ledger", "LedgerError", "RepeatError", "Study"]


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
}


class Ledger:
    """A SQLite ledger file; cheap to open, safe to share between processes (WAL + busy timeout)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        path = Path(path)
        if str(path) != ":memory:" and not path.parent.exists():
            raise LedgerError(f"the directory {path.parent} for the ledger does not exist")
        self.path = path
        self._lock = threading.RLock()  # one connection, shared by the supervisor threads
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, check_same_thread=False,
                               isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if str(path) != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        with self.transaction():
            for name, (columns, pk) in _SCHEMA.items():
                table = self.db.table(name)
                if not table.exists():
                    table.create(columns, pk=pk, not_null={pk} if pk == "name" else None)
            self.db["trials"].create_index(["study", "number"], unique=True, if_not_exists=True)
            self.db["timing"].create_index(["study", "kind"], if_not_exists=True)

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
        if not name or not name.strip():
            raise LedgerError("a study needs a non-empty name")
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
        return study

    def open_study(self, name: str) -> Study:
        if not self.db["studies"].count_where("name = ?", [name]):
            raise LedgerError(f"no study named '{name}' in {self.path}")
        return Study(self, name)

    def has_study(self, name: str) -> bool:
        return bool(self.db["studies"].count_where("name = ?", [name]))

    def delete_study(self, name: str) -> None:
        """Remove a study and everything recorded for it, in one transaction (evals redo cells)."""
        with self.transaction():
            for table in ("trials", "timing", "events"):
                self.db.execute(f"DELETE FROM {table} WHERE study = ?", [name])
            self.db.execute("DELETE FROM studies WHERE name = ?", [name])

    def study_names(self) -> list[str]:
        return [r["name"] for r in self.db["studies"].rows_where(order_by="created_at")]

    def close(self) -> None:
        self.db.conn.close()
