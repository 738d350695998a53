"""The virtual clock in whole sessions: trial times are the table's costs plus the agent's charged
time, exactly, with one worker and with two, with speculation shorter and longer than its trial,
under a time budget, and across a resume. Time moves only as the test says (ManualTime), or, for
whole ``tune`` sessions, at the real rate between jumps (the assertions then read the ledger)."""

import heapq
import itertools
from pathlib import Path

import pytest
from fakes import A, ManualTime, ScriptedModel, costing, run_graph
from fakes import virtual_session as session
from langchain_core.messages import AIMessage

from asap.agent.config import ConfigError, TuneConfig
from asap.graphs.session import tune
from asap.tools.hpo.space import Space
from asap.tools.ledger.store import Ledger
from asap.tools.workloads import Workload

USERWL = Path(__file__).parents[1] / "userwl"


@pytest.mark.parametrize("decision_s", [2.0, None])
def test_one_worker_trial_times_are_the_running_sum_of_costs_and_decisions(tmp_path,
                                                                          decision_s):
    """With a scripted LLM each decision costs 2 s; with none (the prior decides) nothing."""
    source = ManualTime()
    model = None if decision_s is None else costing(source, decision_s)
    study, ctx = session(tmp_path, model, source, speculation="off")
    run_graph(ctx)
    study.clock.close()
    t, expected = study.trials(), 0.0
    assert len(t) == 5
    for trial in t:  # each round: the decision on the critical path, then the table's cost
        expected += decision_s or 0.0
        assert trial.started_at == pytest.approx(expected, abs=1e-9)
        expected += trial.metrics["train_time"]
        assert trial.ended_at == pytest.approx(expected, abs=1e-9)
        assert trial.duration == pytest.approx(trial.metrics["train_time"], abs=1e-9)
    calls = study.timings("llm_call")
    assert len(calls) == (0 if decision_s is None else 5)
    assert all(c["duration"] == pytest.approx(2.0) for c in calls)
    assert expected > 10.0  # simulated seconds passed, though the manual time moved by 10 at most


def test_two_workers_follow_the_hand_computed_schedule(tmp_path):
    source = ManualTime()
    study, ctx = session(tmp_path, costing(source, 0.0), source, workers=2, trials=7,
                         speculation="off")
    run_graph(ctx)
    study.clock.close()
    free: list[float] = []
    for k, trial in enumerate(study.trials()):  # each trial starts when a worker frees up
        start = 0.0 if k < 2 else heapq.heappop(free)
        assert trial.started_at == pytest.approx(start, abs=1e-9), k
        heapq.heappush(free, start + trial.metrics["train_time"])
        assert trial.ended_at == pytest.approx(start + trial.metrics["train_time"], abs=1e-9)
    landed = [r["end"] for r in study.timings("train")]  # rows written as trials land
    assert landed == sorted(landed) and len(landed) == 7
    workers = {t.meta["worker"] for t in study.trials()}
    assert workers == {0, 1}


@pytest.mark.parametrize("call_s, charged", [(3.0, 0.0), (15.0, 5.0)])
def test_a_speculative_call_is_charged_only_for_what_outlasts_its_trial(tmp_path, monkeypatch,
                                                                         call_s, charged):
    """Trials of 10 simulated seconds; every decision takes ``call_s``. From the third trial on,
    each round is decided by the call made while the trial before it trained: the next trial
    starts when both are done, so the gap is the call's excess over the trial, or nothing."""
    monkeypatch.syspath_prepend(str(USERWL))
    from simulated import constant
    space = Space.from_file(USERWL / "simulated.yaml")
    wl = Workload("sim", constant, space, "score", "maximize", kwargs={"seconds": 10.0},
                  duration="train_time")
    source = ManualTime()
    study, ctx = session(tmp_path, costing(source, call_s), source, workload=wl, trials=6,
                         speculation="threshold", decide_ahead=False)
    run_graph(ctx, tau=10.0, depth=1)  # tau 10: every prediction is accepted
    study.clock.close()
    t = study.trials()
    accepted = [e for e in study.events("speculation") if e["detail"]["accepted"]]
    assert len(accepted) == 4  # rounds 3-6: the first trial has nothing to predict from
    assert t[1].started_at - t[0].ended_at == pytest.approx(call_s)  # a critical call
    for before, after in itertools.pairwise(t[1:]):
        assert after.started_at - before.ended_at == pytest.approx(charged, abs=1e-9)


def test_the_time_budget_stops_at_the_trial_that_crosses_it(tmp_path):
    cfg = TuneConfig(workload="hpobench:australian", trials=200, time_budget_s=120.0,
                     db=str(tmp_path / "b.db"), clock="virtual", isolate=False,
                     speculation="off", decide="json")
    summary = tune(cfg, llm=ScriptedModel(lambda m, k: AIMessage(A)))
    study = Ledger(tmp_path / "b.db").open_study(summary["study"])
    [run] = study.events("session")
    start, t = run["detail"]["start"], study.trials()
    assert run["detail"]["clock"] == "virtual" and len(t) < 200
    assert all(x.started_at < start + 120.0 for x in t)  # none starts after the budget
    last = t[-1]
    if last.status == "failed":  # the trial running at the budget is stopped there
        assert "time budget ran out" in last.error
        assert last.ended_at == pytest.approx(start + 120.0, abs=1e-6)
    assert all(x.ended_at <= start + 120.0 + 1e-6 for x in t)
    assert max(x.ended_at for x in t) >= start + 120.0 - 60.0  # it ran the budget, not less


def test_resume_continues_the_clock_and_stays_on_it(tmp_path):
    settings = dict(workload="hpobench:australian", db=str(tmp_path / "r.db"), clock="virtual",
                    isolate=False, speculation="off", decide="json")
    model = ScriptedModel(lambda m, k: AIMessage(A))
    tune(TuneConfig(trials=3, **settings), llm=model)
    summary = tune(TuneConfig(trials=6, **settings), llm=model)
    study = Ledger(tmp_path / "r.db").open_study(summary["study"])
    first, second = study.events("session")
    assert second["detail"]["start"] >= first["detail"]["end"]
    t = study.trials()
    assert len(t) == 6 and t[3].started_at >= t[2].ended_at
    assert [x.started_at for x in t] == sorted(x.started_at for x in t)
    assert study.clocks() == {"virtual"}
    with pytest.raises(ConfigError, match="ran on the virtual clock; resume it with --clock "
                                          "virtual"):
        tune(TuneConfig(trials=8, **{**settings, "clock": "real"}), llm=model)


def _sim(monkeypatch, seconds: float) -> Workload:
    monkeypatch.syspath_prepend(str(USERWL))
    from simulated import constant
    return Workload("sim", constant, Space.from_file(USERWL / "simulated.yaml"), "score",
                    "maximize", kwargs={"seconds": seconds}, duration="train_time")


def test_the_trial_timeout_is_read_on_the_virtual_clock(tmp_path, monkeypatch):
    source = ManualTime()
    study, ctx = session(tmp_path, costing(source, 1.0), source, trials=2, speculation="off",
                         workload=_sim(monkeypatch, 100.0))
    ctx.trainer.time_limit_s = 30.0
    run_graph(ctx)
    study.clock.close()
    for t in study.trials():  # a 100-s trial under a 30-s limit: failed after 30 s, not 100
        assert t.status == "failed" and "on the virtual clock" in t.error
        assert t.duration == pytest.approx(30.0)


def test_cancelling_a_virtual_session_lands_its_trial_at_once(tmp_path, monkeypatch):
    """A trial a day long, cancelled while it trains: recorded failed now, nothing waits."""
    from asap.graphs.callbacks import TuneCallback
    from asap.tools.types import Cancel, Cancelled
    cancel = Cancel()

    class CancelOnStart(TuneCallback):
        def on_trial_start(self, study, number, config, tool):
            cancel.cancel("stopped by the test")
    cfg = TuneConfig(workload="sim", trials=3, db=str(tmp_path / "c.db"), clock="virtual",
                     isolate=False, speculation="off", decide="json")
    with pytest.raises(Cancelled):
        tune(cfg, llm=ScriptedModel(lambda m, k: AIMessage(A)), cancel=cancel,
             workload=_sim(monkeypatch, 86400.0), callbacks=[CancelOnStart()])
    [t] = Ledger(tmp_path / "c.db").open_study("sim").trials()
    assert t.status == "failed" and t.error == "stopped by the test"
    assert t.duration < 86400.0
