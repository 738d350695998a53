"""Crashes and concurrency for real: SIGKILLed sessions, two processes on one ledger."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
from fakes import FakeOpenAI

from asap.tools.ledger import Ledger
from asap.tools.portfolio import Portfolio


@pytest.fixture
def server():
    fake = FakeOpenAI(delay_s=0.3).start()  # decisions take 0.3 s: kills land in LLM calls too
    yield fake
    fake.stop()


def tune_cmd(server, db, study, trials):
    return [sys.executable, "-m", "asap.cli", "tune", "hpobench:australian",
            "--time-scale", "0.02", "--trials", str(trials), "--db", str(db), "--study", study,
            "--base-url", server.base_url, "--model", "fake", "--decide", "json",
            "--speculation", "off"]


def finished(db, study):
    if not db.exists() or not Ledger(db).has_study(study):
        return {}
    return {t.id: (t.number, t.status, t.value, t.error)
            for t in Ledger(db).open_study(study).trials() if t.status != "running"}


@pytest.mark.e2e
def test_sigkill_at_20_random_points_loses_no_finished_trial(tmp_path, server):
    db, rng = tmp_path / "k.db", random.Random(20)
    cmd = tune_cmd(server, db, "k", 60)
    seen, kills = {}, 0
    while kills < 20:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 5.0))  # start-up, LLM calls, training, ledger writes
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        now = finished(db, "k")
        lost = {i: v for i, v in seen.items() if now.get(i, (None,))[:3] != v[:3]}
        assert not lost, f"kill {kills}: finished trials lost or changed: {lost}"
        seen = now
    assert kills == 20
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
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
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    trials = Ledger(db).open_study("same").trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len(trials) >= 10 and all(t.status == "complete" for t in trials)
    pids = {t.meta["pid"] for t in trials}
    assert len(pids) == 2  # both processes trained trials of the study
