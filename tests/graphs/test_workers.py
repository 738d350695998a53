"""N trials in flight: the graph keeps every worker busy, logs pending rows, and stops them all.

Concurrency is shown by events, not timing: ``parallel:rendezvous`` succeeds only when another
trial runs beside it, ``faulty:reports_then_hangs`` trials are cancelled once both reported.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from fakes import ScriptedModel
from langchain_core.messages import AIMessage

from asap.agent.config import TuneConfig
from asap.graphs.callbacks import TuneCallback
from asap.graphs.session import tune
from asap.tools.ledger.store import Ledger
from asap.tools.trials.resources import Slot
from asap.tools.trials.trainer import Trainer
from asap.tools.types import Cancel, Cancelled
from asap.tools.workloads import resolve

USERWL = Path(__file__).parents[1] / "userwl"


@pytest.fixture
def userwl(monkeypatch):
    monkeypatch.syspath_prepend(str(USERWL))
    monkeypatch.chdir(USERWL)  # the workers import the objectives' modules from here
    return USERWL


def _model() -> ScriptedModel:
    return ScriptedModel(lambda messages, kwargs: AIMessage(content='"A"'))


def test_two_workers_keep_two_trials_in_flight_and_log_them_as_they_land(tmp_path, userwl,
                                                                          monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("ASAP_TEST_BARRIER", str(barrier))
    model = _model()
    cfg = TuneConfig(workload="parallel:rendezvous", space=str(userwl / "space.yaml"), trials=6,
                     workers=2, isolate=False, db=str(tmp_path / "w.db"), study="w",
                     decide="json", speculation="off", llm_after=0, ask="always")  # from round 1
    summary = tune(cfg, llm=model)
    trials = Ledger(tmp_path / "w.db").open_study("w").trials()
    # The first two met each other: they could only if both trained at once.
    assert summary["complete"] == 6 and all(t.status == "complete" for t in trials)
    assert {t.meta["worker"] for t in trials} == {0, 1}
    assert len({t.config["x"] for t in trials}) == 6  # no worker got another's proposal
    # Later prompts extend earlier ones (prefix-stable), with a running row for each trial in
    # flight and its result row after it, in the order the trials landed.
    prompts = [m[0].content for m, _ in model.calls]
    logs = [p.split("## Round")[0] for p in prompts]
    assert all(b.startswith(a) for a, b in zip(logs, logs[1:], strict=False))
    assert "Up to 2 trials train at once" in prompts[0]
    last = logs[-1]
    for n in range(3):  # trials that landed before the last decision (trial 5's: 0 .. 2)
        running = last.index(f"-> trial {n} running")
        assert running < last.index(f"Result: trial {n}: ")
    assert re.search(r"-> trial 0 running\n## Round 2", prompts[1])  # while trial 0 trains


def test_each_worker_gets_its_share_of_the_cores_and_its_gpus(tmp_path, userwl):
    model = _model()
    cfg = TuneConfig(workload="parallel:where", space=str(userwl / "space.yaml"), trials=2,
                     workers=2, db=str(tmp_path / "c.db"), study="c", decide="json",
                     speculation="off")
    tune(cfg, llm=model)
    cores = os.cpu_count() or 1
    for t in Ledger(tmp_path / "c.db").open_study("c").trials():
        assert t.metrics["threads"] == max(1, cores // 2) and t.metrics["gpu"] == -1.0
    # A GPU slot's trial sees that GPU alone (set before anything initialized CUDA).
    wl = resolve("parallel:where", space_file=str(userwl / "space.yaml"))
    study = Ledger(tmp_path / "g.db").create_study("g", wl.space, metric="score",
                                                   direction="maximize")
    trial = Trainer(study, wl, slots=[Slot(0, gpus=(1,))]).run({"x": 0.5}, tool="test")
    assert trial.metrics["gpu"] == 1.0 and trial.meta["worker"] == 0


class _CancelWhenBothReported(TuneCallback):
    def __init__(self, cancel: Cancel) -> None:
        self.cancel, self.reported, self.lock = cancel, set(), threading.Lock()

    def on_report(self, study, number, step, value) -> None:
        with self.lock:
            self.reported.add(number)
            if len(self.reported) == 2:
                self.cancel.cancel("interrupted by the user (Ctrl-C)")


def test_a_cancel_stops_every_running_trial(tmp_path, userwl):
    cancel = Cancel()
    cfg = TuneConfig(workload="faulty:reports_then_hangs", space=str(userwl / "space.yaml"),
                     trials=5, workers=2, db=str(tmp_path / "x.db"), study="x", decide="json",
                     speculation="off")
    with pytest.raises(Cancelled):
        tune(cfg, llm=_model(), callbacks=[_CancelWhenBothReported(cancel)], cancel=cancel)
    study = Ledger(tmp_path / "x.db").open_study("x")
    trials = study.trials()
    assert len(trials) == 2  # no third trial started
    assert all(t.status == "failed" and t.error == "interrupted by the user (Ctrl-C)"
               for t in trials)
    assert study.events("session")[-1]["detail"]["interrupted"] is True


def test_bad_worker_requests_fail_before_anything_is_written(tmp_path):
    from asap.agent.config import ConfigError
    with pytest.raises(ConfigError, match="workers"):
        TuneConfig.make(workload="hpobench:australian", workers=0)
    cfg = TuneConfig(workload="hpobench:australian", gpus_per_trial=1, db=str(tmp_path / "n.db"))
    with pytest.raises(ConfigError, match="asks for GPUs, and this machine has none"):
        tune(cfg, llm=_model())
    assert not (tmp_path / "n.db").exists()


def test_the_prior_ranks_with_the_trials_in_flight_and_knows_the_waves_left(tmp_path,
                                                                          monkeypatch):
    """Two workers, eight trials on the virtual clock: every ranking with a trial in flight sees
    it as pending (running in the ledger when ranked), and each knows the trials the cap leaves
    per worker (the last two trials: one each, the last wave)."""
    import asap.graphs.rounds as rounds

    seen = []
    real = rounds.rank

    def spy(study, offers, **kw):
        seen.append((len(study.trials()), len(study.trials(status="running")), kw["waves"]))
        return real(study, offers, **kw)
    monkeypatch.setattr(rounds, "rank", spy)
    cfg = TuneConfig(workload="hpobench:australian", trials=8, workers=2, isolate=False,
                     clock="virtual", llm="off", db=str(tmp_path / "w.db"), study="w")
    assert tune(cfg)["complete"] == 8
    assert seen and all(running == 1 for _, running, _ in seen[1:])  # the other worker's
    assert [started for started, _, waves in seen if waves == 1] == [6, 7]
    assert all(waves == -(-(8 - started) // 2) for started, _, waves in seen)


def test_with_two_workers_results_are_taken_in_the_order_trials_started(tmp_path, userwl,
                                                                          monkeypatch):
    """Trial 0 ends after trial 1 (``parallel:overtaken``); every ranking still sees the
    first k trials finished and the rest running (in_order, the default), so a seed gives the
    same decisions whichever trial ends first: trial n is decided, while both workers train,
    from trials 0 .. n - 3. The ledger keeps when each really ended."""
    import asap.graphs.rounds as rounds

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("ASAP_TEST_BARRIER", str(barrier))
    seen = []
    real = rounds.rank

    def spy(study, offers, **kw):
        trials = study.trials()
        seen.append(([t.number for t in trials if t.status != "running"], len(trials)))
        return real(study, offers, **kw)
    monkeypatch.setattr(rounds, "rank", spy)
    cfg = TuneConfig(workload="parallel:overtaken", space=str(userwl / "space.yaml"), trials=6,
                     workers=2, isolate=False, llm="off", db=str(tmp_path / "o.db"), study="o")
    assert tune(cfg)["complete"] == 6
    assert [started for _, started in seen] == [0, 1, 2, 3, 4, 5]
    assert all(done == list(range(max(0, started - 2))) for done, started in seen)
    trials = Ledger(tmp_path / "o.db").open_study("o").trials()
    first = min(trials, key=lambda t: t.started_at)  # the one that waited for another's end
    assert first.ended_at >= max(t.ended_at for t in trials if t.number in (0, 1))
