"""One study in the ledger: its trials (start, report, finish), timing rows and events.

A :class:`Study` is a handle: every read goes to SQLite, so handles never go stale, and every
state change is one transaction of its :class:`~asap.tools.ledger.store.Ledger`.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

import sqlite_utils

from asap.tools.hpo.space import Space
from asap.tools.ledger.rows import LedgerError, bounded, json_metrics, num, to_trial
from asap.tools.trials.clock import Clock
from asap.tools.trials.processes import alive_elsewhere, process_start
from asap.tools.types import (
    FINISHED,
    Direction,
    EventKind,
    Status,
    TimingKind,
    Trial,
    better,
    config_key,
)

if TYPE_CHECKING:
    from asap.tools.ledger.store import Ledger


class RepeatError(LedgerError):
    """The configuration already ran in this study (as trial ``number``)."""

    def __init__(self, message: str, number: int) -> None:
        super().__init__(message)
        self.number = number


class BudgetSpent(LedgerError):
    """The study already has its trial budget of trials (another process may have started the
    last ones): no slot is left to claim."""


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
        # Every time stamp this handle writes is on this clock: real, or a session's virtual
        # clock (asap.tools.trials.clock), so readers need no special case.
        self.clock: Clock = Clock()

    @property
    def db(self) -> sqlite_utils.Database:
        return self.ledger.db

    # -- trials ---------------------------------------------------------------------------------
    def start_trial(self, config: dict[str, Any], *, tool: str, fidelity: int | None = None,
                    meta: dict[str, Any] | None = None, allow_repeat: bool = True,
                    limit: int | None = None) -> int:
        """Validate and insert a running trial; returns its id. Invalid configs never get in.

        With ``allow_repeat=False`` a configuration that already ran (or is running) in the study
        raises :class:`RepeatError`; with ``limit``, a study that already has ``limit`` trials
        (running ones included) raises :class:`BudgetSpent`. Both are checked in the inserting
        transaction, so processes sharing a study can neither start one configuration twice nor
        run past the budget together (four processes with 30 trials each ran 33).
        """
        config = self.space.validate(config)
        key = config_key(config)
        with self.ledger.transaction():
            if not allow_repeat and (row := self.db.execute(
                    "SELECT number FROM trials WHERE study = ? AND config = ? LIMIT 1",
                    [self.name, key]).fetchone()):
                raise RepeatError(f"this configuration already ran as trial {row[0]}", row[0])
            number = self.db.execute(
                "SELECT COALESCE(MAX(number), -1) + 1 FROM trials WHERE study = ?", [self.name]
            ).fetchone()[0]
            if limit is not None and number >= limit:
                raise BudgetSpent(f"study '{self.name}' already has its {limit} trials")
            return self.db["trials"].insert({
                "study": self.name, "number": number, "config": key,
                "tool": tool, "status": "running", "intermediate": "{}", "metrics": "{}",
                "fidelity": fidelity, "started_at": self.clock.now(),
                "meta": json.dumps({**(meta or {}), "pid": os.getpid(),
                                    "pid_start": process_start(os.getpid())}),
            }).last_pk

    def annotate(self, trial_id: int, **meta: Any) -> None:
        """Merge ``meta`` into a trial's meta (e.g. where its output was logged)."""
        with self.ledger.transaction():
            row = self.db.execute("SELECT meta FROM trials WHERE id = ?", [trial_id]).fetchone()
            merged = {**json.loads(row[0] or "{}"), **meta}
            self.db.execute("UPDATE trials SET meta = ? WHERE id = ?", [json.dumps(merged), trial_id])

    def respace(self, space: Space, configs: dict[int, dict[str, Any]]) -> None:
        """A define-by-run study's space, grown as its objective showed more of it, and its
        trials' configurations rewritten in it (``{trial id: config}``), in one transaction:
        no reader sees the new space beside the old configurations."""
        configs = {tid: space.validate(c) for tid, c in configs.items()}  # all, before a write
        with self.ledger.transaction():
            self.db.execute("UPDATE studies SET space = ? WHERE name = ?",
                            [space.to_json(), self.name])
            for tid, config in configs.items():
                self.db.execute("UPDATE trials SET config = ? WHERE id = ? AND study = ?",
                                [config_key(config), tid, self.name])
        self.space = space

    def discard(self, trial_ids: list[int]) -> None:
        """Remove finished trials whose run was not a trial of this study (a define-by-run
        objective that asked its parameters with another space), their reports with them, in
        one transaction."""
        with self.ledger.transaction():
            for tid in trial_ids:
                self.db.execute("DELETE FROM reports WHERE trial_id = ?", [tid])
                self.db.execute("DELETE FROM trials WHERE id = ? AND study = ? AND status != "
                                "'running'", [tid, self.name])

    def config_keys(self) -> set[str]:
        """:func:`config_key` of every trial of the study, running ones included."""
        return {r[0] for r in self.db.execute(
            "SELECT config FROM trials WHERE study = ?", [self.name]).fetchall()}

    def report(self, trial_id: int, step: int, value: float) -> None:
        """Record an intermediate value (one fidelity step) of a running trial: one row
        appended, whatever came before (rewriting the trial's JSON made 10,000 reports take
        125 s, the last 2,500 of them 63 s)."""
        value = num(value)
        with self.ledger.transaction():
            row = self.db.execute("SELECT status FROM trials WHERE id = ? AND study = ?",
                                  [trial_id, self.name]).fetchone()
            if row is None or row[0] != "running":
                self._running(trial_id)  # raises, naming why
            self.db.execute("INSERT INTO reports (study, trial_id, step, value) "
                            "VALUES (?, ?, ?, ?)", [self.name, trial_id, int(step), value])

    def finish_trial(self, trial_id: int, *, status: Status, metrics: dict[str, float] | None = None,
                     error: str | None = None, intermediate: dict[int, float] | None = None,
                     ended_at: float | None = None, started_at: float | None = None) -> Trial:
        """Close a running trial in one transaction: status, metrics, value, error, end time
        (``ended_at``, default now: a virtual clock's landing passes its own), and its start
        moved to ``started_at`` when that is later (the backend measured the objective's own
        time, so a wait for a worker is not counted as training)."""
        if status not in FINISHED:
            raise LedgerError(f"a trial finishes as one of {FINISHED}, not {status!r}")
        metrics = {k: num(v) for k, v in (metrics or {}).items()}
        value = metrics.get(self.metric)
        if status == "complete" and (value is None or not math.isfinite(value)):
            raise LedgerError(f"a complete trial needs a finite '{self.metric}' metric")
        with self.ledger.transaction():
            row = self._running(trial_id)
            now = self.clock.now() if ended_at is None else ended_at
            began = row["started_at"] if started_at is None else max(row["started_at"],
                                                                      min(started_at, now))
            update = {"status": status, "metrics": json_metrics(metrics), "error": bounded(error),
                      "value": value if value is not None and math.isfinite(value) else None,
                      "started_at": began, "ended_at": now, "duration": now - began,
                      "intermediate": self._settle(trial_id, row["intermediate"])}
            if intermediate is not None:
                update["intermediate"] = json.dumps({str(k): num(v) for k, v in intermediate.items()})
            self.db["trials"].update(trial_id, update)
        return self.trial(trial_id)

    def fail_running(self, reason: str) -> list[int]:
        """Mark trials left 'running' by a dead process as failed; returns their ids.

        A trial another live process is running (two sessions on one study) is left alone.
        """
        with self.ledger.transaction():
            ids = [r["id"] for r in self.db["trials"].rows_where(
                "study = ? AND status = 'running'", [self.name])
                if not alive_elsewhere(**_owner(json.loads(r["meta"] or "{}")))]
            now = self.clock.now()
            for tid in ids:
                old = self.db.execute("SELECT intermediate FROM trials WHERE id = ?",
                                      [tid]).fetchone()[0]
                self.db.execute(
                    "UPDATE trials SET status='failed', error=?, ended_at=?, duration=?-started_at, "
                    "intermediate=? WHERE id=?", [reason, now, now, self._settle(tid, old), tid])
        return ids

    def _settle(self, trial_id: int, stored: str | None) -> str:
        """A finishing trial's reports moved into its ``intermediate`` JSON (in a transaction)."""
        inter = json.loads(stored or "{}")
        for step, value in self.db.execute(
                "SELECT step, value FROM reports WHERE trial_id = ? ORDER BY id", [trial_id]):
            inter[str(step)] = value
        self.db.execute("DELETE FROM reports WHERE trial_id = ?", [trial_id])
        return json.dumps(inter)

    def _with_reports(self, rows: list[dict[str, Any]]) -> list[Trial]:
        """Trials from rows, a running one's reports so far in its ``intermediate``."""
        if self.ledger.has_reports and any(r["status"] == "running" for r in rows):
            pending: dict[int, dict[str, float]] = {}
            for tid, step, value in self.db.execute(
                    "SELECT trial_id, step, value FROM reports WHERE study = ? ORDER BY id",
                    [self.name]):
                pending.setdefault(tid, {})[str(step)] = value
            for r in rows:
                if r["id"] in pending:
                    r["intermediate"] = json.dumps({**json.loads(r["intermediate"] or "{}"),
                                                    **pending[r["id"]]})
        return [to_trial(r) for r in rows]

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
        return self._with_reports(rows)[0]

    def to_records(self) -> list[dict[str, Any]]:
        """One flat row per trial: number, tool, status, value, each metric (``metric_<name>``),
        each parameter as evaluated (``param_<name>``, None when inactive; a table's grid
        point), error, times, duration."""
        rows = []
        for t in self.trials():
            row: dict[str, Any] = {"number": t.number, "tool": t.tool, "status": t.status,
                                   "value": t.value}
            row |= {f"metric_{k}": v for k, v in sorted(t.metrics.items())}
            row |= {f"param_{p}": t.evaluated.get(p) for p in self.space.names}
            row |= {"error": t.error, "started_at": t.started_at, "ended_at": t.ended_at,
                    "duration": t.duration}
            rows.append(row)
        return rows

    def to_dataframe(self) -> Any:
        """:meth:`to_records` as a pandas DataFrame (asap.optimize's result: Optuna's columns)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.to_records())

    def trials(self, *, status: Status | tuple[Status, ...] | None = None,
               after_id: int = 0) -> list[Trial]:
        """Trials in id order, optionally filtered by status and newer than ``after_id``."""
        where, args = "study = ? AND id > ?", [self.name, after_id]
        if status is not None:
            statuses = (status,) if isinstance(status, str) else status
            where += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        return self._with_reports(list(self.db["trials"].rows_where(where, args, order_by="id")))

    def finished_ids(self) -> list[int]:
        """Ids of finished trials, without decoding them (cheap enough for every round)."""
        return [r[0] for r in self.db.execute(
            "SELECT id FROM trials WHERE study = ? AND status != 'running' ORDER BY id",
            [self.name]).fetchall()]

    def best(self) -> Trial | None:
        order = "value DESC" if self.direction == "maximize" else "value ASC"
        rows = list(self.db["trials"].rows_where(
            "study = ? AND status = 'complete'", [self.name], order_by=f"{order}, id", limit=1))
        return to_trial(rows[0]) if rows else None

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
        """The study's timing rows (of one ``kind``), oldest first, ``detail`` decoded."""
        return self._rows("timing", kind)

    def _rows(self, table: str, kind: str | None) -> list[dict[str, Any]]:
        where, args = ("study = ?", [self.name]) if kind is None else (
            "study = ? AND kind = ?", [self.name, kind])
        rows = list(self.db[table].rows_where(where, args, order_by="id"))
        for r in rows:
            r["detail"] = json.loads(r["detail"] or "{}")
        return rows

    def log_event(self, kind: EventKind, **detail: Any) -> None:
        """A decision worth keeping: a guard retry, a fallback, a self-tuning adjustment."""
        with self.ledger.transaction():
            self.db["events"].insert({"study": self.name, "kind": kind, "at": self.clock.now(),
                                      "detail": json.dumps(detail, default=str)})

    def last_time(self) -> float | None:
        """The study's latest time stamp (a trial's start or end, a timing row, an event): where
        a resumed session's virtual clock continues. None for a study with no record yet."""
        row = self.db.execute(
            "SELECT MAX(t) FROM (SELECT MAX(COALESCE(ended_at, started_at)) AS t FROM trials "
            "WHERE study = :s UNION ALL SELECT MAX(end) FROM timing WHERE study = :s "
            "UNION ALL SELECT MAX(at) FROM events WHERE study = :s)", {"s": self.name}).fetchone()
        return row[0]

    def clocks(self) -> set[str]:
        """The clocks the study's sessions ran on (``real`` for sessions that did not say)."""
        return {e["detail"].get("clock", "real") for e in self.events("session")}

    def events(self, kind: EventKind | None = None) -> list[dict[str, Any]]:
        """The study's events (of one ``kind``), oldest first, ``detail`` decoded."""
        return self._rows("events", kind)


def _owner(meta: dict[str, Any]) -> dict[str, Any]:
    return {"pid": meta.get("pid"), "start": meta.get("pid_start")}
