"""``asap report``: exposed vs hidden LLM time from a synthetic timeline, and the PNG."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from asap.agent.report.stats import decompose, merge, overlap
from asap.agent.report.timeline import timeline
from asap.cli.main import main
from asap.tools.trials.clock import Clock


def test_interval_arithmetic():
    assert merge([(5, 7), (0, 2), (1, 3)]) == [(0, 3), (5, 7)]
    assert overlap((2, 6), [(0, 3), (5, 7)]) == 2


@pytest.fixture
def timed(ledger, toy_space):
    study = ledger.create_study("rep", toy_space, metric="loss", direction="minimize")
    # Serial round: LLM 0-2 (trainer idle), train 2-10; speculative call 3-5 during training,
    # critical call 9-11 half hidden; train 11-15.
    study.log_timing("llm_call", 0, 2, prompt_tokens=100, cached_tokens=0)
    study.log_timing("train", 2, 10)
    study.log_timing("llm_call", 3, 5, prompt_tokens=200, cached_tokens=180, speculative=True)
    study.log_timing("speculation", 3, 5, wasted=True)
    study.log_event("speculation", accepted=False)
    study.log_timing("llm_call", 9, 11, prompt_tokens=300, cached_tokens=290)
    study.log_timing("train", 11, 15)
    study.log_event("session", start=0, end=16, interrupted=False)
    return study


class _At(Clock):
    """A clock stopped at one time: what the trial started on it records."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def test_the_start_up_is_the_time_before_a_sessions_first_trial(ledger, toy_space):
    """From the session's start to its first trial (the worker's start, the first round's
    tools), less what the tools' timing rows already name; a resumed session has its own."""
    study = ledger.create_study("up", toy_space, metric="loss", direction="minimize")
    study.log_timing("tool_call", 0, 1)
    study.clock = _At(3.0)
    study.start_trial({"x": 0.0, "lr": 0.01, "n_layers": 1, "optimizer": "adam"}, tool="t")
    study.log_timing("train", 3, 10)
    study.log_event("session", start=0, end=10, interrupted=False)
    study.log_event("session", start=20, end=25, interrupted=False)  # started no trial
    d = decompose(study)
    assert d["startup_s"] == 2 + 5 and d["tools_s"] == 1
    assert d["train_s"] + d["exposed_llm_s"] + d["tools_s"] + d["startup_s"] + d["other_s"] \
        == d["wall_s"] == 15


def test_decompose_splits_exposed_and_hidden(timed):
    d = decompose(timed)
    assert d["wall_s"] == 16 and d["train_s"] == 12 and d["llm_s"] == 4
    # exposed: 0-2 and 10-11; hidden: the speculative 3-5 and the critical 9-10
    assert d["exposed_llm_s"] == 3 and d["hidden_llm_s"] == 3
    assert d["train_s"] + d["exposed_llm_s"] + d["tools_s"] + d["startup_s"] + d["other_s"] \
        == d["wall_s"]
    assert d["exposed_share"] == pytest.approx(3 / 16)
    assert d["speculative_llm_s"] == 2 and d["wasted_s"] == 2 and d["accept_rate"] == 0.0
    assert d["cached_share"] == pytest.approx(470 / 600)


def test_timeline_png_and_cli(timed, tmp_path, capsys):
    png = timeline(timed, tmp_path / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    out = tmp_path / "cli.png"
    assert main(["report", "rep", "--db", str(tmp_path / "ledger.db"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if "(exposed)" in line)
    assert "3.0" in row and "18.8%" in row and out.exists()


def test_a_speculative_call_outlasting_training_is_exposed(ledger, toy_space):
    study = ledger.create_study("late", toy_space, metric="loss", direction="minimize")
    study.log_timing("train", 0, 4)
    study.log_timing("llm_call", 3, 6, speculative=True)  # the join waits 2 s for it
    d = decompose(study)
    assert d["exposed_llm_s"] == 2 and d["hidden_llm_s"] == 1 and d["llm_s"] == 0


def test_a_killed_session_counts_in_the_wall_clock_so_no_share_passes_100(ledger, toy_space):
    from asap.agent.report.stats import summarize
    study = ledger.create_study("killed", toy_space, metric="loss", direction="minimize")
    # A session SIGKILLed before it logged itself (0-300 s of rows), then one that did (300-400).
    study.log_timing("llm_call", 0, 250, prompt_tokens=10, cached_tokens=0)
    study.log_timing("train", 250, 300)
    study.log_timing("llm_call", 300, 320, prompt_tokens=10, cached_tokens=0)
    study.log_timing("train", 320, 400)
    study.log_event("session", start=300, end=400, interrupted=False)
    d = decompose(study)
    assert d["wall_s"] == 400 and d["exposed_llm_s"] == 270 and d["exposed_share"] <= 1
    t = summarize(study)["time"]
    assert t["wall_s"] == 400 and \
        t["train_s"] + t["exposed_llm_s"] + t["startup_s"] + t["other_s"] == 400


def test_report_draws_the_history_and_the_importance_beside_the_timeline(tmp_path, capsys):
    from asap.tools.hpo.space import Space
    from asap.tools.ledger.store import Ledger
    space = Space.from_dict({"x": {"type": "float", "low": 0, "high": 1},
                             "y": {"type": "float", "low": 0, "high": 1}})
    study = Ledger(tmp_path / "h.db").create_study("h", space, metric="loss",
                                                   direction="minimize")
    for i in range(12):
        config = {"x": (i * 0.37) % 1, "y": (i * 0.61) % 1}
        tid = study.start_trial(config, tool="optuna:tpe" if i % 2 else "nevergrad:DE")
        study.finish_trial(tid, status="complete", metrics={"loss": 10 * config["x"] + config["y"]})
    out = tmp_path / "h-timeline.png"
    assert main(["report", "h", "--db", str(tmp_path / "h.db"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("h-history.png", "h-importance.png"):
        png = tmp_path / name
        assert str(png) in text and png.read_bytes()[:4] == b"\x89PNG"
    from asap.agent.report.plots import importance
    _, why = importance(Ledger(tmp_path / "h.db").create_study(
        "none", space, metric="loss", direction="minimize"), tmp_path / "n.png")
    assert "not drawn from 0 complete trials" in why
    few = Ledger(tmp_path / "h.db").create_study("few", space, metric="loss",
                                                 direction="minimize")
    for i in range(6):  # issue 39 (9): six trials say little of what mattered
        tid = few.start_trial({"x": i / 6, "y": 0.5}, tool="optuna:tpe")
        few.finish_trial(tid, status="complete", metrics={"loss": float(i)})
    made, why = importance(few, tmp_path / "f.png")
    assert made is None and "not drawn from 6 complete trials" in why


def test_a_recorded_session_decomposes_into_parts_that_add_up(tmp_path, monkeypatch):
    """A real session with speculation on (a scripted LLM, every round asked): the split sums
    to the wall-clock, speculative calls overlapping training count as hidden, and no more
    speculative time is wasted than was spent. Trial 3 ends only once a call has begun while
    it trains (``gated_llm``), so one does overlap it, however fast the machine."""
    from pathlib import Path

    from fakes import ScriptedModel

    from asap.graphs.api import run_task
    from asap.tools.ledger.store import Ledger

    userwl = Path(__file__).parents[2] / "userwl"
    monkeypatch.syspath_prepend(str(userwl))
    import gated_llm

    def decide(messages, kwargs):
        gated_llm.asked()
        if "response_format" not in kwargs:
            return AIMessage(content="Ready.")
        return AIMessage(content='{"action": "train", "choice": "A"}')

    run_task("gated_llm:overlapped", space=str(userwl / "space.yaml"), isolate=False,
             llm=ScriptedModel(decide), trials=6, db=str(tmp_path / "d.db"), study="d",
             speculation="threshold", selftune=False, ask="always")
    study = Ledger(tmp_path / "d.db").open_study("d")
    d = decompose(study)
    parts = d["train_s"] + d["exposed_llm_s"] + d["tools_s"] + d["startup_s"] + d["other_s"]
    assert parts == pytest.approx(d["wall_s"]) and min(
        d["train_s"], d["exposed_llm_s"], d["tools_s"], d["startup_s"], d["other_s"]) >= 0
    assert d["speculative_llm_s"] > 0 and d["hidden_llm_s"] > 0
    assert d["wasted_s"] <= d["speculative_llm_s"]


def test_the_timeline_lays_resumed_sessions_end_to_end():
    from asap.agent.report.timeline import _Clock
    clock = _Clock([(0, 10), (1000, 1005)])  # a session, then a resume 990 s later
    assert [clock(t) for t in (0, 10, 500, 1000, 1005)] == [0, 10, 10, 10, 15]


def test_trial_bars_are_labelled_with_their_number_and_value(timed):
    from asap.agent.report.timeline import _Clock, trial_labels
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    for loss in (0.5, 0.25):
        timed.finish_trial(timed.start_trial({**cfg, "x": loss}, tool="optuna:tpe"),
                           status="complete", metrics={"loss": loss})
    rows = timed.timings("train")
    rows = [{**rows[0], "trial_number": 0}, {**rows[1], "trial_number": 1}]
    clock = _Clock([(0, 16)])
    assert trial_labels(timed, rows, clock) == [(6.0, "#0\n0.5"), (13.0, "#1\n0.25")]


def test_the_timeline_draws_one_training_lane_per_worker(ledger, toy_space):
    from asap.agent.report.timeline import layout
    study = ledger.create_study("w", toy_space, metric="loss", direction="minimize")
    for start, end, worker in ((0, 2, 0), (0.5, 1, 1), (2, 3, 0)):
        study.log_timing("train", start, end, worker=worker)
    assert [(lane.name, len(lane.bars)) for lane in layout(study).lanes] == [
        ("worker 0", 2), ("worker 1", 1)]
    serial = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    for start, end in ((0, 2), (2, 3)):  # a ledger written before workers existed
        serial.log_timing("train", start, end)
    assert [lane.name for lane in layout(serial).lanes] == ["training"]


def test_trials_tied_at_the_best_value_are_counted_and_named_as_saturation(ledger, toy_space):
    """Several trials at exactly the best value (accuracy 1.0 on a small validation set): the
    summary counts them and says the metric has saturated, since the trial it names is only
    the first of them; a best reached once is reported as before."""
    from rich.console import Console

    from asap.agent.report.stats import summarize
    from asap.cli.render import print_summary
    from asap.graphs.api import TaskResult

    def study_of(name: str, values: list[float]):
        study = ledger.create_study(name, toy_space, metric="acc", direction="maximize")
        for i, v in enumerate(values):
            trial = study.start_trial({"x": i / 10, "lr": 0.01, "n_layers": 1,
                                       "optimizer": "adam"}, tool="t")
            study.finish_trial(trial, status="complete", metrics={"acc": v})
        return study

    tied = summarize(study_of("tied", [0.9, 1.0, 0.95, 1.0, 1.0]))
    assert tied["tied_best"] == 3 and tied["best_trial"] == 1  # the first of them
    assert TaskResult.from_summary(tied).tied_best == 3
    console = Console(width=300, record=True)
    print_summary(tied, console)
    assert "3 trials tie at the best acc (1): the metric has saturated" in console.export_text()
    once = summarize(study_of("once", [0.9, 1.0, 0.95]))
    assert once["tied_best"] == 1
    console = Console(width=300, record=True)
    print_summary(once, console)
    assert "tie at the best" not in console.export_text()


def test_idle_cores_are_named_with_the_workers_that_would_fill_them(ledger, toy_space):
    """A trial's CPU seconds over its seconds, the median over the trials: one busy core of
    four with one worker suggests four; a busy machine, too few trials, or trials that are
    not most of the wall-clock suggest nothing."""
    from asap.agent.report.stats import cores, cores_line

    def study(name: str, cpu: list[float], have: int | None, workers: int = 1):
        s = ledger.create_study(name, toy_space, metric="loss", direction="minimize")
        for i, c in enumerate(cpu):
            s.log_timing("train", 2 * i, 2 * i + 2, worker=0, cpu_s=c)
        s.log_event("session", start=0, end=2 * len(cpu), interrupted=False, workers=workers,
                    cores=have)
        return s

    from rich.console import Console

    from asap.agent.report.stats import summarize
    from asap.cli.render import print_summary

    one_study = study("one", [2.0, 2.1, 1.9, 0.4], have=4)  # the median trial: 1 core
    one = cores(one_study, train_share=1.0)
    assert cores(one_study, train_share=0.3)["suggest"] is None  # the tuner set the pace
    assert one == {"busy": pytest.approx(0.975), "cores": 4, "workers": 1, "grown": None,
                   "suggest": 4}
    line = cores_line(one, "--workers ")
    assert line.startswith("the trials kept 1.0 of 4 cores busy, one at a time: --workers 4 ")
    console = Console(width=300, record=True)
    print_summary(summarize(one_study), console)  # asap tune's summary ends on it
    assert line in console.export_text()
    from asap.agent.chat.answers import time_split
    assert time_split(one_study).endswith(  # the chat's "where did the time go?"
        "And " + cores_line(one, "workers=") + ".")
    two = cores(study("two", [6.0, 6.0, 6.0], have=4, workers=2), 1.0)  # 3 cores each, 2 at once
    assert two["suggest"] is None and cores_line(two, "workers=") is None
    assert cores(study("few", [2.0, 2.0], have=4), 1.0) is None  # fewer than three trials
    assert cores(study("here", [2.0, 2.0, 2.0], have=None), 1.0) is None  # not in workers
    unmeasured = ledger.create_study("old", toy_space, metric="loss", direction="minimize")
    unmeasured.log_event("session", start=0, end=1, interrupted=False)  # an older ledger
    assert cores(unmeasured, 1.0) is None and cores_line(None, "workers=") is None
    grown = study("grown", [1.0, 1.0, 1.0, 2.0, 2.0, 2.0], have=2, workers=2)
    grown.log_event("workers", after=3, to=2, busy=0.5, cores=2)
    assert cores_line(cores(grown, 1.0), "--workers ") == (
        "the first 3 trials kept 0.5 of 2 cores busy: 2 workers from trial 4 on "
        "(--workers 1 keeps one)")


def test_a_virtual_clock_measures_no_idle_cores(tmp_path):
    """On the virtual clock a trial's seconds are simulated, so its CPU seconds over them say
    nothing of the cores: a table run in workers names none."""
    from asap.graphs.api import run_task

    result = run_task("hpobench:australian", llm=False, trials=3, db=str(tmp_path / "v.db"),
                      clock="virtual", isolate=True)
    assert result.complete == 3 and result.cores is None
