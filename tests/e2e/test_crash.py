"""Crashes and concurrency for real: SIGKILLed sessions, two processes on one ledger.

The kills land at points the test observes, not at times it guesses: an LLM request arriving at
the fake endpoint, a trial row turning up as running, a write reaching the ledger's WAL file. A
slow machine only makes each wait longer; the bounds on the waits are guards, not the measure.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import FakeOpenAI

from asap.tools.hpo.portfolio import Portfolio
from asap.tools.ledger.store import Ledger

GUARD_S = 300  # a wait longer than this means the session hangs: fail rather than wait on


@pytest.fixture
def server():
    fake = FakeOpenAI(delay_s=0.3).start()  # each decision is in flight for 0.3 s
    yield fake
    fake.stop()


def tune_cmd(server, db, study, trials):
    return [sys.executable, "-m", "asap.cli", "tune", "hpobench:australian",
            "--time-scale", "0.02", "--trials", str(trials), "--db", str(db), "--study", study,
            "--base-url", server.base_url, "--model", "fake", "--decide", "json",
            "--speculation", "off", "--ask", "always"]  # calls in flight to kill it at


def finished(db, study):
    if not db.exists() or not Ledger(db).has_study(study):
        return {}
    return {t.id: (t.number, t.status, t.value, t.error)
            for t in Ledger(db).open_study(study).trials() if t.status != "running"}


def until(proc: subprocess.Popen, seen) -> bool:
    """Poll ``seen()`` until it is true (True) or the process ends first (False)."""
    deadline = time.monotonic() + GUARD_S
    while proc.poll() is None:
        if seen():
            return True
        if time.monotonic() > deadline:
            raise AssertionError("the session showed no sign of progress")
        time.sleep(0.01)
    return False


def llm_in_flight(server):
    server.arrived.clear()
    return server.arrived.is_set


def trial_running(db: Path, study: str):
    known = {t.id for t in _trials(db, study)}
    return lambda: any(t.status == "running" and t.id not in known for t in _trials(db, study))


def ledger_write(db: Path, study: str):
    wal = Path(f"{db}-wal")
    stamp = _stamp(wal)
    return lambda: _stamp(wal) != stamp


def _trials(db: Path, study: str):
    try:
        return Ledger(db).open_study(study).trials() if db.exists() else []
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return []


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


@pytest.mark.e2e
def test_sigkill_at_observed_points_loses_no_finished_trial(tmp_path, server):
    db = tmp_path / "k.db"
    cmd = tune_cmd(server, db, "k", 200)
    points = {"llm call in flight": lambda: llm_in_flight(server),
              "trial running": lambda: trial_running(db, "k"),
              "ledger write": lambda: ledger_write(db, "k")}
    hit = dict.fromkeys(points, 0)
    seen = {}
    for kind in itertools.islice(itertools.cycle(points), 18):
        watch = points[kind]()  # armed before the process starts: no event slips past
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert until(proc, watch), f"the session ended before a {kind}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hit[kind] += 1
        now = finished(db, "k")
        lost = {i: v for i, v in seen.items() if now.get(i, (None,))[:3] != v[:3]}
        assert not lost, f"kill at a {kind}: finished trials lost or changed: {lost}"
        seen = now
    assert all(n == 6 for n in hit.values()), hit  # each kind of point was hit
    total = len(Ledger(db).open_study("k").trials())
    done = subprocess.run(tune_cmd(server, db, "k", total + 2), capture_output=True, text=True,
                          timeout=GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    study = Ledger(db).open_study("k")
    trials = study.trials()
    assert all(t.status != "running" for t in trials)
    assert all(finished(db, "k")[i][:3] == v[:3] for i, v in seen.items())  # zero lost
    interrupted = [t for t in trials if t.error and t.error.startswith("interrupted")]
    assert interrupted and all(t.status == "failed" for t in interrupted)  # marked, not re-queued
    assert [t.number for t in trials] == list(range(len(trials)))
    # The tools' state is rebuilt from the ledger: a fresh portfolio is told every finished trial.
    tpe = Portfolio(study)
    tpe.optimizer("optuna", "tpe")
    assert tpe._told["optuna:tpe"] == set(study.finished_ids())


@pytest.mark.e2e
def test_sigkill_with_two_trials_running_marks_both_and_the_resume_goes_on(tmp_path, server):
    db = tmp_path / "n.db"
    cmd = [*tune_cmd(server, db, "n", 60), "--workers", "2"]
    log = tmp_path / "n.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    both = lambda: sum(t.status == "running" for t in _trials(db, "n")) == 2  # noqa: E731
    assert until(proc, both), (f"the session ended (exit {proc.returncode}) before two trials "
                               f"ran at once: {log.read_text()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen = finished(db, "n")
    lost = [t.id for t in _trials(db, "n") if t.status == "running"]
    assert len(lost) == 2  # both workers' trials were in flight when the driver died
    total = len(_trials(db, "n"))
    done = subprocess.run([*tune_cmd(server, db, "n", total + 4), "--workers", "2"],
                          capture_output=True, text=True, timeout=GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 interrupted marked failed" in done.stderr
    trials = {t.id: t for t in Ledger(db).open_study("n").trials()}
    assert all(trials[i].status == "failed" and trials[i].error.startswith("interrupted")
               for i in lost)
    assert all(finished(db, "n")[i][:3] == v[:3] for i, v in seen.items())  # none lost
    assert len(trials) == total + 4 and all(t.status != "running" for t in trials.values())


@pytest.mark.e2e
def test_ctrl_c_with_two_trials_running_marks_both_interrupted(tmp_path, server):
    userwl = Path(__file__).parents[1] / "userwl"
    db = tmp_path / "i.db"
    cmd = [sys.executable, "-m", "asap.cli", "tune", "faulty:reports_then_hangs", "--space",
           str(userwl / "space.yaml"), "--trials", "6", "--db", str(db), "--study", "i",
           "--base-url", server.base_url, "--model", "fake", "--decide", "json",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=userwl, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    reported = lambda: sum(bool(t.intermediate) for t in _trials(db, "i")) == 2  # noqa: E731
    if not until(proc, reported):
        raise AssertionError("the session ended before both trials reported: "
                             + proc.communicate(timeout=GUARD_S)[1][-2000:])
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends
    _, err = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 130, err[-2000:]
    trials = Ledger(db).open_study("i").trials()
    assert len(trials) == 2 and all(
        t.status == "failed" and t.error == "interrupted by the user (Ctrl-C)" for t in trials)


@pytest.mark.e2e
def test_two_processes_on_one_ledger(tmp_path, server):
    db = tmp_path / "c.db"
    # Different studies at once.
    procs = [subprocess.Popen(tune_cmd(server, db, name, 6), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    for name in ("a", "b"):
        trials = Ledger(db).open_study(name).trials()
        assert [t.number for t in trials] == list(range(6))
        assert all(t.status == "complete" for t in trials)
    # Then the same study: every trial is recorded once, none is left running or lost.
    procs = [subprocess.Popen(tune_cmd(server, db, "same", 10), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    trials = Ledger(db).open_study("same").trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    # Each slot is claimed in the transaction that starts the trial: together they run exactly
    # the budget, not one trial more per process.
    assert len(trials) == 10 and all(t.status == "complete" for t in trials)
    pids = {t.meta["pid"] for t in trials}
    assert len(pids) >= 2  # the processes shared the study's trials
    assert len({json.dumps(t.config) for t in trials}) == len(trials)  # never the same config


@pytest.mark.e2e
def test_a_sigkilled_session_leaves_no_worker_computing(tmp_path, server):
    """The worker is the fork server's child: it must notice the tuner is gone and exit."""
    import os
    userwl = Path(__file__).parents[1] / "userwl"
    pidfile = tmp_path / "worker.pid"
    cmd = [sys.executable, "-m", "asap.cli", "tune", "faulty:pid_then_hangs", "--space",
           str(userwl / "space.yaml"), "--trials", "1", "--db", str(tmp_path / "o.db"),
           "--base-url", server.base_url, "--model", "fake", "--decide", "json"]
    tmp = tmp_path / "tmp"  # the sessions' temp directory, to see what they leave there
    tmp.mkdir()
    env = {**os.environ, "ASAP_TEST_PIDFILE": str(pidfile), "TMPDIR": str(tmp)}
    proc = subprocess.Popen(cmd, cwd=userwl, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    assert until(proc, pidfile.exists), "the session ended before its trial started"
    while not pidfile.read_text():  # written, not yet flushed
        time.sleep(0.01)
    worker = int(pidfile.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + GUARD_S
    while Path(f"/proc/{worker}").exists() and _state(worker) != "Z":
        assert time.monotonic() < deadline, "the worker outlived its session"
        time.sleep(0.05)
    # The killed session's multiprocessing folder is left behind; the next session removes it,
    # and its own goes when it exits.
    assert list(tmp.glob(f"asap-mp-{proc.pid}-*")) and not list(tmp.glob("pymp-*"))
    cmd[4], cmd[10] = "faulty:ok", str(tmp_path / "next.db")
    done = subprocess.run(cmd, cwd=userwl, capture_output=True, text=True, env=env,
                          timeout=GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(tmp.glob("asap-mp-*")) and not list(tmp.glob("pymp-*"))


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"