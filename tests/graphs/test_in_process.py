"""An objective that runs in the session's process (``isolate=False``): on the caller's thread,
with its own BLAS pools, the tuner's work never beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import asap
import asap.graphs.rounds as rounds
from asap.tools.ledger.store import Ledger

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
SEEN: list[tuple[int, list[int]]] = []  # (thread, BLAS threads) per trial


def blas_threads() -> list[int]:
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


def objective(config, report):
    SEEN.append((threading.get_ident(), blas_threads()))
    return (config["x"] - 0.3) ** 2


def test_trials_run_on_the_callers_thread_with_its_pools_and_the_tuner_at_one_thread(
        tmp_path, monkeypatch):
    ranked: list[list[int]] = []

    def rank(*args, **kwargs):  # the prior's GP: the tuner's own linear algebra
        ranked.append(blas_threads())
        return real_rank(*args, **kwargs)

    real_rank = rounds.rank
    monkeypatch.setattr(rounds, "rank", rank)
    SEEN.clear()
    import scipy.linalg  # noqa: F401 - its pool is loaded, so the limits below reach it
    with threadpool_limits(limits=2, user_api="blas"):  # more than one, on any machine
        mine = blas_threads()
        result = asap.optimize(objective, SPACE, n_trials=6, direction="minimize", llm=False,
                               isolate=False, db=str(tmp_path / "h.db"),
                               show_progress_bar=False)
        assert blas_threads() == mine  # as they were, after the session
    assert mine and set(mine) == {2}
    assert len(SEEN) == 6 and {thread for thread, _ in SEEN} == {threading.get_ident()}
    assert all(pools == mine for _, pools in SEEN)
    assert ranked and all(set(pools) == {1} for pools in ranked)
    study = Ledger(str(tmp_path / "h.db"), readonly=True).open_study(result.study_name)
    # The next round's tools are asked after a trial lands, not beside it.
    assert study.timings("tool_call") and not any(
        row["detail"].get("prefetched") for row in study.timings("tool_call"))


def test_an_error_of_the_session_is_raised_on_the_callers_thread(tmp_path):
    def callback(study, trial):
        raise ValueError(f"the callback broke on trial {trial.number}")

    with pytest.raises(ValueError, match="the callback broke on trial 0"):
        asap.optimize(objective, SPACE, n_trials=3, llm=False, isolate=False,
                      db=str(tmp_path / "e.db"), show_progress_bar=False, callbacks=[callback])


SCRIPT = textwrap.dedent("""
    import faulthandler, signal, sys, time
    import asap

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's dump if it hangs

    def objective(config, report):
        report(1, config["x"])
        time.sleep(600)
        return config["x"]

    try:
        asap.optimize(objective, {"x": {"type": "float", "low": 0, "high": 1}}, n_trials=3,
                      llm=False, isolate=False, db=sys.argv[1], study="c",
                      show_progress_bar=False)
    except KeyboardInterrupt:
        sys.exit(130)
""")


def test_ctrl_c_during_an_in_process_trial_ends_the_session_and_marks_it(tmp_path):
    db = str(tmp_path / "c.db")
    (tmp_path / "run.py").write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), db], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)

    def reported() -> bool:
        try:
            return any(t.intermediate for t in Ledger(db, readonly=True).open_study("c").trials())
        except Exception:  # noqa: BLE001 - not written yet
            return False

    while proc.poll() is None and not reported():
        time.sleep(0.05)  # polling for an event (the trial's first report), not a duration
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # every thread's stack, to say where it hung
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(2)  # faulthandler writes at once; the pipe is read after the kill
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no exit 120 s after Ctrl-C; its threads:\n{err[-6000:]}")
    assert proc.returncode == 130, err[-2000:]
    trials = Ledger(db, readonly=True).open_study("c").trials()
    assert len(trials) == 1 and trials[0].status == "failed"
    assert trials[0].error == "interrupted by the user (Ctrl-C)"


INTERRUPTED_IN_THE_LEDGER = textwrap.dedent("""
    import os, signal, sys, threading, types
    from asap.graphs.session import _cancel_on_signals
    from asap.tools.hpo.space import Space
    from asap.tools.ledger.store import Ledger

    ledger = Ledger(sys.argv[1])
    study = ledger.open_or_create("s", Space.from_dict({"x": {"type": "float", "low": 0, "high": 1}}),
                                  metric="loss", direction="minimize")
    tid = study.start_trial({"x": 0.5}, tool="t")
    cancelled = []
    ctx = types.SimpleNamespace(study=study, trainer=types.SimpleNamespace(
        cancel_all=lambda reason, wait_s=0.0: cancelled.append(reason)))
    armed = [True]

    def tracer(frame, event, arg):  # Ctrl-C at the start of the transaction's __exit__
        if event == "call" and armed[0] and frame.f_code.co_name == "__exit__" \\
                and frame.f_code.co_filename.endswith("contextlib.py"):
            armed[0] = False
            os.kill(os.getpid(), signal.SIGINT)

    kept = None
    try:
        with _cancel_on_signals(ctx):
            sys.settrace(tracer)
            try:
                study.report(tid, 1, 0.3)  # what an in-process trial's report() writes
            finally:
                sys.settrace(None)
            threading.Event().wait(120)  # the signal comes again once the ledger is free
    except KeyboardInterrupt as exc:
        kept = exc  # kept alive, as the trial's future keeps it
    free = []

    def take() -> None:  # what the trial's supervisor does to record it
        free.append(ledger._lock.acquire(timeout=10))
        if free[-1]:
            ledger._lock.release()

    other = threading.Thread(target=take)
    other.start()
    other.join()
    trial = study.trials()[0]
    print(kept is not None, free, cancelled[:1], trial.status, trial.intermediate)
""")


def test_ctrl_c_inside_a_ledger_call_waits_until_the_ledger_is_free(tmp_path):
    """A KeyboardInterrupt raised at the start of a ledger transaction's ``__exit__`` (an
    in-process trial's report, interrupted) left the ledger's lock held while the exception
    was kept, so the trial's supervisor could never record it and the session hung. The
    signal handler now lets the call finish and has the signal sent again."""
    (tmp_path / "run.py").write_text(INTERRUPTED_IN_THE_LEDGER)
    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "l.db")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == \
        "True [True] ['interrupted by the user (Ctrl-C)'] failed {1: 0.3}"
