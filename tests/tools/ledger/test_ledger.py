import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import LedgerError


def test_reopen_restores_everything(tmp_path, toy_space):
    path = tmp_path / "l.db"
    study = Ledger(path).create_study("s", toy_space, metric="loss", direction="minimize",
                                      workload="toy")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    tid = study.start_trial(cfg, tool="optuna:tpe", fidelity=3)
    study.report(tid, 1, 0.5)
    study.report(tid, 2, 0.25)
    study.finish_trial(tid, status="complete", metrics={"loss": 0.2, "acc": 0.9})
    bad = study.start_trial(cfg, tool="llm")
    study.finish_trial(bad, status="failed", error="boom")
    study.log_timing("llm_call", 1.0, 2.5, trial_number=0, prompt_tokens=100, cached_tokens=90,
                     completion_tokens=12)
    study.log_timing("llm_call", 3.0, 4.0)  # tokens unknown
    study.log_event("fallback", reason="no tool call")

    again = Ledger(path).open_study("s")
    assert again.space == toy_space and again.metric == "loss" and again.direction == "minimize"
    t0, t1 = again.trials()
    assert (t0.config, t0.tool, t0.status, t0.value, t0.fidelity) == (cfg, "optuna:tpe", "complete", 0.2, 3)
    assert t0.intermediate == {1: 0.5, 2: 0.25} and t0.metrics["acc"] == 0.9 and t0.duration >= 0
    assert (t1.status, t1.error, t1.value) == ("failed", "boom", None)
    timing = again.timings("llm_call")
    assert timing[0]["cached_tokens"] == 90 and timing[0]["duration"] == 1.5
    assert timing[1]["cached_tokens"] is None  # unknown is not zero
    assert again.events("fallback")[0]["detail"] == {"reason": "no tool call"}
    assert again.best().number == 0
    assert Ledger(path).db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_invalid_config_never_written(ledger, toy_space):
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    with pytest.raises(ValueError, match="outside"):
        study.start_trial({"x": 99.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="llm")
    assert study.trials() == []


def test_state_errors(ledger, toy_space):
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    with pytest.raises(LedgerError, match="already exists"):
        ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    with pytest.raises(LedgerError, match="no study named"):
        ledger.open_study("nope")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="t")
    with pytest.raises(LedgerError, match="needs a finite 'loss'"):
        study.finish_trial(tid, status="complete", metrics={"acc": 1.0})
    study.finish_trial(tid, status="failed", error="x")
    with pytest.raises(LedgerError, match="already failed"):
        study.finish_trial(tid, status="complete", metrics={"loss": 1.0})
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger(ledger.path.parent / "missing-dir" / "x.db")


def test_crash_mid_write_leaves_nothing_half_written(tmp_path, toy_space):
    path = tmp_path / "crash.db"
    study = Ledger(path).create_study("s", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="t")
    # A process that dies (os._exit: no cleanup, no rollback) in the middle of a transaction
    # that has already updated the trial's row.
    script = textwrap.dedent(f"""
        import os
        from asap.tools.ledger.store import Ledger
        led = Ledger({str(path)!r})
        with led.transaction():
            led.db["trials"].update({tid}, {{"status": "complete", "value": 0.1}})
            led.db["timing"].insert({{"study": "s", "kind": "train", "start": 0, "end": 1}})
            os._exit(9)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    again = Ledger(path).open_study("s")
    assert [t.status for t in again.trials()] == ["running"]
    assert again.timings() == []
    assert again.fail_running("interrupted") == [tid]
    assert again.trial(tid).status == "failed" and again.trial(tid).error == "interrupted"


def test_a_repeat_is_refused_in_the_inserting_transaction(ledger, toy_space):
    from asap.tools.ledger.study import RepeatError
    study = ledger.create_study("rep", toy_space, metric="loss", direction="minimize")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    study.start_trial(cfg, tool="a")  # running: a repeat already
    with pytest.raises(RepeatError, match="already ran as trial 0") as info:
        study.start_trial(dict(reversed(cfg.items())), tool="b", allow_repeat=False)
    assert info.value.number == 0 and len(study.trials()) == 1  # nothing written
    study.start_trial(cfg, tool="c")  # asked for explicitly: allowed
    assert len(study.trials()) == 2


def test_a_ledger_carries_asaps_id_and_schema_version(tmp_path, toy_space):
    import sqlite3

    from asap.tools.ledger.file import APPLICATION_ID, SCHEMA_VERSION
    Ledger(tmp_path / "v.db").create_study("s", toy_space, metric="loss", direction="minimize")
    conn = sqlite3.connect(tmp_path / "v.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_ledger_from_before_versions_is_migrated_and_a_newer_one_refused(tmp_path, toy_space):
    import sqlite3

    from asap.tools.ledger.file import SCHEMA_VERSION
    path = tmp_path / "old.db"
    Ledger(path).create_study("s", toy_space, metric="loss", direction="minimize")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 0")  # as ledgers were written before versions
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()
    assert Ledger(path).study_names() == ["s"]  # adopted, its studies intact
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="written by a newer asap"):
        Ledger(path)


@pytest.mark.parametrize("name", ["../../evil", "/abs/path", ".hidden", "a b", "x" * 129, ""])
def test_study_names_cannot_become_paths(ledger, toy_space, name):
    with pytest.raises(LedgerError, match="is not a study name"):
        ledger.create_study(name, toy_space, metric="loss", direction="minimize")


def test_a_huge_error_is_stored_bounded_with_its_head_and_tail(ledger, toy_space):
    from asap.tools.ledger.rows import MAX_ERROR_CHARS
    study = ledger.create_study("e", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="t")
    error = "Traceback (most recent call last):\n" + "x" * 5_000_000 + "\nValueError: the cause"
    trial = study.finish_trial(tid, status="failed", error=error)
    assert len(trial.error) <= MAX_ERROR_CHARS
    assert trial.error.startswith("Traceback") and trial.error.endswith("ValueError: the cause")


def test_a_trial_slot_is_claimed_in_the_starting_transaction(ledger, toy_space):
    from asap.tools.ledger.study import BudgetSpent
    study = ledger.create_study("b", toy_space, metric="loss", direction="minimize")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    for x in (1.0, 2.0):
        study.start_trial({**cfg, "x": x}, tool="t", limit=2)  # running ones hold their slot
    with pytest.raises(BudgetSpent, match="already has its 2 trials"):
        study.start_trial({**cfg, "x": 3.0}, tool="t", limit=2)
    assert len(study.trials()) == 2


def test_resuming_with_another_space_is_refused_with_the_difference(ledger, toy_space):
    from asap.tools.hpo.space import Space
    ledger.open_or_create("s", toy_space, metric="loss", direction="minimize", workload="w")
    assert ledger.open_or_create("s", toy_space, metric="loss", direction="minimize",
                                 workload="w").name == "s"  # the same space resumes
    other = Space.from_dict({**toy_space.to_dict(), "extra": {"type": "int", "low": 1, "high": 3}})
    with pytest.raises(LedgerError, match="another search space \\('extra' added\\)"):
        ledger.open_or_create("s", other, metric="loss", direction="minimize", workload="w")


def test_a_transient_disk_io_error_on_open_is_retried(tmp_path, monkeypatch):
    import sqlite3

    from asap.tools.ledger import store as ledger_mod
    real, failures = sqlite3.connect, []

    def flaky(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args, **kwargs)
    monkeypatch.setattr(ledger_mod.sqlite3, "connect", flaky)
    ledger = ledger_mod.Ledger(tmp_path / "x.db")
    assert failures == [1] and not ledger.has_study("nope")


@pytest.mark.parametrize("reader", ["", "?mode=ro"])
def test_another_open_here_and_a_reader_elsewhere_never_lose_a_writers_commits(
        tmp_path, toy_space, reader):
    """Issue 37's "a reader must never end a writer": this process opens the ledger again (a
    served graph does, per request) while its session writes, and another process reads and
    closes (the sqlite3 shell, pandas, ``asap show``). Had opening the file a second time here
    dropped the session's locks, that reader would delete the WAL under the session and its
    later commits would be lost."""
    db = tmp_path / "live.db"
    writer = Ledger(db)
    study = writer.create_study("s", toy_space, metric="loss", direction="minimize")
    Ledger(db).close()
    Ledger(db, readonly=True).close()
    read = (f"import sqlite3; c = sqlite3.connect({(db.as_uri() + reader)!r}, uri=True); "
            "c.execute('SELECT count(*) FROM studies').fetchall(); c.close()")
    subprocess.run([sys.executable, "-c", read], check=True)
    study.log_event("after_the_reader")
    count = (f"import sqlite3; c = sqlite3.connect({(db.as_uri() + '?mode=ro')!r}, uri=True); "
             "print(c.execute(\"SELECT count(*) FROM events WHERE kind='after_the_reader'\")"
             ".fetchone()[0])")
    seen = subprocess.run([sys.executable, "-c", count], check=True, capture_output=True,
                          text=True).stdout.strip()
    assert seen == "1"


def test_a_running_trial_whose_pid_was_reused_is_recovered(ledger, toy_space):
    """The pid in a trial's meta now belongs to another process (a sleep started later): the
    trial's own process is gone, so it is marked failed; a trial of a live process is kept."""
    import json
    import subprocess

    from asap.tools.trials.processes import process_start
    study = ledger.create_study("pids", toy_space, metric="loss", direction="minimize")
    other = subprocess.Popen(["sleep", "60"])
    try:
        ids = []
        for x, start in [(1.0, 12345), (2.0, None)]:  # a wrong start time; none recorded
            tid = study.start_trial({"x": x, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
                                    tool="t")
            ledger.db.execute("UPDATE trials SET meta = ? WHERE id = ?",
                              [json.dumps({"pid": other.pid, "pid_start": start}), tid])
            ids.append(tid)
        live = study.start_trial({"x": 3.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
                                 tool="t")
        meta = study.trial(live).meta
        assert meta["pid_start"] == process_start(os.getpid()) and meta["pid"] == os.getpid()
        ledger.db.execute("UPDATE trials SET meta = ? WHERE id = ?", [json.dumps(
            {"pid": other.pid, "pid_start": process_start(other.pid)}), live])
        # ids[0]: the pid is alive but started at another time: reused, so the trial is lost.
        # ids[1]: an old row without a start time: a live pid is taken at its word; ``live``:
        # the very process that started it runs on.
        assert study.fail_running("interrupted") == [ids[0]]
    finally:
        other.kill()
        other.wait()


def test_reports_are_appended_and_settle_into_the_trial_when_it_ends(ledger, toy_space):
    """A report adds one row and never rewrites the trial (10,000 reports were quadratic);
    readers see a running trial's reports, and finishing moves them into its intermediate."""
    study = ledger.create_study("rep", toy_space, metric="loss", direction="minimize")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    tid = study.start_trial(cfg, tool="t")
    for step in range(1, 2001):
        study.report(tid, step, 1.0 / step)
    study.report(tid, 5, 0.5)  # a step reported again: the later value counts
    raw = ledger.db.execute("SELECT intermediate FROM trials WHERE id = ?", [tid]).fetchone()[0]
    assert raw == "{}"  # the trial's row was never rewritten
    running = study.trial(tid)
    assert len(running.intermediate) == 2000 and running.intermediate[5] == 0.5
    assert study.trials()[0].intermediate == running.intermediate
    done = study.finish_trial(tid, status="complete", metrics={"loss": 0.1})
    assert done.intermediate == running.intermediate
    assert ledger.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 0
    with pytest.raises(LedgerError, match="already complete"):
        study.report(tid, 2001, 0.0)
    lost = study.start_trial({**cfg, "x": 2.0}, tool="t")
    study.report(lost, 1, 0.75)
    ledger.db.execute("UPDATE trials SET meta = '{}' WHERE id = ?", [lost])  # no live owner
    assert study.fail_running("interrupted") == [lost]
    assert study.trial(lost).intermediate == {1: 0.75}


def test_every_event_written_or_read_is_a_declared_kind():
    import re
    from pathlib import Path
    from typing import get_args

    from asap.tools.types import EventKind

    root = Path(__file__).parents[3]
    code = "\n".join(p.read_text() for d in ("agent", "graphs", "tools", "asap", "evals")
                     for p in (root / d).rglob("*.py"))
    written = set(re.findall(r'log_event\(\s*"(\w+)"', code))
    read = set(re.findall(r'\.events\(\s*"(\w+)"', code))
    assert written and read <= written  # nothing is read that nobody writes
    assert written == set(get_args(EventKind))  # each kind declared once, and each one used


def test_a_transaction_that_finds_the_database_locked_at_once_begins_again():
    """SQLite may answer BEGIN IMMEDIATE with "database is locked" without waiting (a stale
    read snapshot in WAL mode); nothing is written yet, so the transaction begins again."""
    import sqlite3

    from asap.tools.ledger.store import _begin

    class Conn:
        def __init__(self, failures):
            self.failures, self.sent = failures, []

        def execute(self, sql):
            self.sent.append(sql)
            if len(self.sent) <= self.failures:
                raise sqlite3.OperationalError("database is locked")

    conn = Conn(failures=2)
    _begin(conn)
    assert conn.sent == ["BEGIN IMMEDIATE"] * 3
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _begin(Conn(failures=99))  # a lock that never frees is still an error, after 6 tries


def test_threads_sharing_the_ledger_keep_each_transaction_whole(tmp_path):
    """Two threads write in transactions while two others read (and fail a statement) on the
    same connection: every write lands and no transaction is ended by another thread's
    statement (a failed read had rolled back a writer's transaction: "cannot commit - no
    transaction is active", its rows lost)."""
    import threading

    ledger = Ledger(tmp_path / "t.db")
    ledger.db["t"].create({"id": int, "v": int}, pk="id")
    errors, stop = [], threading.Event()

    def write(k):
        try:
            for i in range(300):
                with ledger.transaction():
                    ledger.db["t"].insert({"id": k * 100_000 + i, "v": i})
                    ledger.db.execute("UPDATE t SET v = v + 1 WHERE id = ?", [k * 100_000 + i])
        except Exception as exc:  # noqa: BLE001 - the assertion names it
            errors.append(repr(exc))

    def read():
        try:
            while not stop.is_set():
                list(ledger.db["t"].rows_where("v > ?", [5], limit=3))
                with pytest.raises(sqlite3.OperationalError):
                    ledger.db.execute("SELECT nope FROM t")
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    writers = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert ledger.db["t"].count == 600


def test_a_trial_can_count_from_when_its_work_began(tmp_path, toy_space):
    """``started_at`` moves a finishing trial's start later (the backend timed the objective
    itself); never earlier than it was started, never past its end."""
    study = Ledger(tmp_path / "s.db").create_study("s", toy_space, metric="loss",
                                                   direction="minimize")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    ends = []
    for began in ("later", "earlier", "after the end"):
        tid = study.start_trial(cfg, tool="t")
        start = study.trial(tid).started_at
        at = {"later": start + 5.0, "earlier": start - 5.0, "after the end": start + 20.0}[began]
        trial = study.finish_trial(tid, status="complete", metrics={"loss": 1.0},
                                   ended_at=start + 10.0, started_at=at)
        ends += [trial.started_at - start, trial.duration]
    assert ends == pytest.approx([5.0, 5.0, 0.0, 10.0, 10.0, 0.0])
