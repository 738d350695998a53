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
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from asap.tools.space import Space
from asap.tools.types import FINISHED, Direction, Status, TimingKind, Trial, better


class LedgerError(RuntimeError):
    """The ledger cannot do what was asked (unknown study, bad state change, locked file...)."""


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


class Study:
    """A handle on one study in a ledger; all reads come from SQLite, so handles never go stale."""

    def __init__(self, ledger: Ledger, name: str) -> None:
        self.ledger = ledger
        self.name = name
        row = ledger.db["studies"].get(name)
        self.space = Space.from_dict(json.loads(row["space"]))
        self.metric: str = row["metric"]
        self.direction: Direction = row["direction"]
        self.workload: str = row["workload"]
        self.meta: dict[str, Any] = json.loads(row["meta"])

    @property
    def db(self) -> sqlite_utils.Database:
        return self.ledger.db

    # -- trials ---------------------------------------------------------------------------------
    def start_trial(self, config: dict[str, Any], *, tool: str, fidelity: int | None = None,
                    meta: dict[str, Any] | None = None) -> int:
        """Validate and insert a running trial; returns its id. Invalid configs never get in."""
        config = self.space.validate(config)
        with self.ledger.transaction():
            number = self.db.execute(
                "SELECT COALESCE(MAX(number), -1) + 1 FROM trials WHERE study = ?", [self.name]
            ).fetchone()[0]
            return self.db["trials"].insert({
                "study": self.name, "number": number, "config": json.dumps(config),
                "tool": tool, "status": "running", "intermediate": "{}", "metrics": "{}",
                "fidelity": fidelity, "started_at": time.time(),
                "meta": json.dumps({**(meta or {}), "pid": os.getpid()}),
            }).last_pk

    def report(self, trial_id: int, step: int, value: float) -> None:
        """Record an intermediate value (one fidelity step) of a running trial."""
        with self.ledger.transaction():
            row = self._running(trial_id)
            inter = json.loads(row["intermediate"])
            inter[str(step)] = _num(value)
            self.db["trials"].update(trial_id, {"intermediate": json.dumps(inter)})

    def finish_trial(self, trial_id: int, *, status: Status, metrics: dict[str, float] | None = None,
                     error: str | None = None, intermediate: dict[int, float] | None = None) -> Trial:
        """Close a running trial in one transaction: status, metrics, value, error, end time."""
        if status not in FINISHED:
            raise LedgerError(f"a trial finishes as one of {FINISHED}, not {status!r}")
        metrics = {k: _num(v) for k, v in (metrics or {}).items()}
        value = metrics.get(self.metric)
        if status == "complete" and (value is None or not math.isfinite(value)):
            raise LedgerError(f"a complete trial needs a finite '{self.metric}' metric")
        with self.ledger.transaction():
            row = self._running(trial_id)
            now = time.time()
            update = {"status": status, "metrics": json.dumps(metrics), "error": error,
                      "value": value if value is not None and math.isfinite(value) else None,
                      "ended_at": now, "duration": now - row["started_at"]}
            if intermediate is not None:
                update["intermediate"] = json.dumps({str(k): _num(v) for k, v in intermediate.items()})
            self.db["trials"].update(trial_id, update)
        return self.trial(trial_id)

    def fail_running(self, reason: str) -> list[int]:
        """Mark trials left 'running' by a dead process as failed; returns their ids.

        A trial another live process is running (two sessions on one study) is left alone.
        """
        with self.ledger.transaction():
            ids = [r["id"] for r in self.db["trials"].rows_where(
                "study = ? AND status = 'running'", [self.name])
                if not _alive_elsewhere(json.loads(r["meta"] or "{}").get("pid"))]
            now = time.time()
            for tid in ids:
                self.db.execute(
                    "UPDATE trials SET status='failed', error=?, ended_at=?, duration=?-started_at "
                    "WHERE id=?", [reason, now, now, tid])
        return ids

    def _running(self, trial_id: int) -> dict[str, Any]:
        rows = list(self.db["trials"].rows_where("id = ? AND study = ?", [trial_id, self.name]))
        if not rows:
            raise LedgerError(f"no trial {trial_id} in study '{self.name}'")
        if rows[0]["status"] != "running":
            raise LedgerError(f"trial {trial_id} is already {rows[0]['status']}")
        return rows[0]

    def trial(self, trial_id: int) -> Trial:
        rows = list(self.db["trials"].rows_where("id = ? AND study = ?", [trial_id, self.name]))
        if not rows:
            raise LedgerError(f"no trial {trial_id} in study '{self.name}'")
        return _to_trial(rows[0])

    def trials(self, *, status: Status | tuple[Status, ...] | None = None,
               after_id: int = 0) -> list[Trial]:
        """Trials in id order, optionally filtered by status and newer than ``after_id``."""
        where, args = "study = ? AND id > ?", [self.name, after_id]
        if status is not None:
            statuses = (status,) if isinstance(status, str) else status
            where += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        return [_to_trial(r) for r in self.db["trials"].rows_where(where, args, order_by="id")]

    def finished_ids(self) -> list[int]:
        """Ids of finished trials, without decoding them (cheap enough for every round)."""
        return [r[0] for r in self.db.execute(
            "SELECT id FROM trials WHERE study = ? AND status != 'running' ORDER BY id",
            [self.name]).fetchall()]

    def best(self) -> Trial | None:
        order = "value DESC" if self.direction == "maximize" else "value ASC"
        rows = list(self.db["trials"].rows_where(
            "study = ? AND status = 'complete'", [self.name], order_by=f"{order}, id", limit=1))
        return _to_trial(rows[0]) if rows else None

    def better(self, a: float, b: float | None) -> bool:
        """True when value ``a`` is strictly better than ``b`` under this study's direction."""
        return better(self.direction, a, b)

    # -- timing and events ----------------------------------------------------------------------
    def log_timing(self, kind: TimingKind, start: float, end: float, *, trial_number: int | None = None,
                   prompt_tokens: int | None = None, cached_tokens: int | None = None,
                   completion_tokens: int | None = None, **detail: Any) -> None:
        """One timing event; token counts stay NULL when unknown (unknown is not zero)."""
        with self.ledger.transaction():
            self.db["timing"].insert({
                "study": self.name, "kind": kind, "start": start, "end": end,
                "duration": end - start, "trial_number": trial_number,
                "prompt_tokens": prompt_tokens, "cached_tokens": cached_tokens,
                "completion_tokens": completion_tokens, "detail": json.dumps(detail, default=str),
            })

    def timings(self, kind: TimingKind | None = None) -> list[dict[str, Any]]:
        where, args = ("study = ?", [self.name]) if kind is None else (
            "study = ? AND kind = ?", [self.name, kind])
        rows = list(self.db["timing"].rows_where(where, args, order_by="id"))
        for r in rows:
            r["detail"] = json.loads(r["detail"] or "{}")
        return rows

    def log_event(self, kind: str, **detail: Any) -> None:
        """A decision worth keeping: a guard retry, a fallback, a self-tuning adjustment."""
        with self.ledger.transaction():
            self.db["events"].insert({"study": self.name, "kind": kind, "at": time.time(),
                                      "detail": json.dumps(detail, default=str)})

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        where, args = ("study = ?", [self.name]) if kind is None else (
            "study = ? AND kind = ?", [self.name, kind])
        rows = list(self.db["events"].rows_where(where, args, order_by="id"))
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return rows


def _alive_elsewhere(pid: Any) -> bool:
    """Whether ``pid`` is another process of this machine that is still running."""
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise LedgerError(f"metric value {v!r} is not a number") from None


def _to_trial(row: dict[str, Any]) -> Trial:
    return Trial(
        id=row["id"], number=row["number"], config=json.loads(row["config"]), tool=row["tool"],
        status=row["status"], value=row["value"], metrics=json.loads(row["metrics"] or "{}"),
        intermediate={int(k): v for k, v in json.loads(row["intermediate"] or "{}").items()},
        error=row["error"], fidelity=row["fidelity"], started_at=row["started_at"],
        ended_at=row["ended_at"], duration=row["duration"], meta=json.loads(row["meta"] or "{}"),
    )
