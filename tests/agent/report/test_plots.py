"""What ``asap report``'s figures show, read from their layout rather than their pixels: one
colour per tool in both figures, no empty lane, every mark on its lane, the start-up gap, and
the history's value axis where progress happens."""

from __future__ import annotations

from asap.agent.report.palette import CALL_COLORS, tool_color
from asap.agent.report.plots import history, history_range
from asap.agent.report.timeline import layout, timeline


def _trial(study, config, tool, value, start, end, worker=0):
    tid = study.start_trial(config, tool=tool)
    trial = study.finish_trial(tid, status="complete", metrics={"loss": value}, ended_at=end)
    study.log_timing("train", start, end, trial_number=trial.number, tool=tool, worker=worker)
    return trial


def test_training_bars_take_their_tools_colour_and_empty_lanes_are_left_out(ledger, toy_space):
    study = ledger.create_study("lanes", toy_space, metric="loss", direction="minimize")
    study.log_event("session", start=0.0, end=20.0, interrupted=False)
    _trial(study, {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, "optuna:tpe",
           0.5, 3.0, 8.0)
    _trial(study, {"x": 2.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, "nevergrad:DE",
           0.4, 8.0, 15.0)
    plan = layout(study)  # no LLM call at all (--llm off): one lane
    assert [lane.name for lane in plan.lanes] == ["training"]
    assert [c for _, _, c in plan.lanes[0].bars] == [tool_color("optuna:tpe"),
                                                     tool_color("nevergrad:DE")]
    assert plan.startup == (0.0, 3.0)  # the session started 3 s before the first trial
    assert tool_color("optuna:tpe") != tool_color("nevergrad:DE")
    assert timeline(study, ledger.path.parent / "lanes.png").stat().st_size > 5000


def test_speculation_marks_sit_on_the_speculative_lane(ledger, toy_space):
    study = ledger.create_study("marks", toy_space, metric="loss", direction="minimize")
    study.log_event("session", start=0.0, end=16.0, interrupted=False)
    study.log_timing("llm_call", 0, 2, prompt_tokens=100, cached_tokens=0)
    _trial(study, {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, "optuna:tpe",
           0.5, 2.0, 10.0)
    study.log_timing("llm_call", 3, 5, prompt_tokens=200, cached_tokens=180, speculative=True)
    study.log_event("speculation", accepted=True)
    lanes = {lane.name: lane for lane in layout(study).lanes}
    assert list(lanes) == ["training", "LLM (critical path)", "LLM (speculative)"]
    assert [ok for _, ok in lanes["LLM (speculative)"].marks] == [True]
    assert not lanes["LLM (critical path)"].marks and not lanes["training"].marks
    assert lanes["LLM (speculative)"].bars[0][2] == CALL_COLORS["speculative"]


def test_the_history_axis_covers_progress_not_a_diverged_trial(ledger, toy_space, tmp_path):
    study = ledger.create_study("hist", toy_space, metric="loss", direction="minimize")
    values = [0.9, 0.7, 1e6, 0.6, 0.65, 0.5, 0.55, 0.52]  # one diverged loss
    for i, v in enumerate(values):
        _trial(study, {"x": i / 10, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
               "optuna:tpe", v, float(i), i + 1.0)
    steps = [min(values[:i + 1]) for i in range(len(values))]
    lo, hi = history_range(study, values, steps)
    assert lo < 0.5 and 0.9 < hi < 10  # the whole best-so-far curve, not the 1e6
    assert history(study, tmp_path / "h.png").stat().st_size > 5000


def test_control_characters_in_an_old_ledgers_names_are_drawn_as_question_marks(
        ledger, toy_space, tmp_path):
    """Issue 37 (18): a metric and a tool named with ESC (ledgers from before names were
    checked): the pictures draw '?' and matplotlib warns of no missing glyph (its warning
    printed the raw ESC to the terminal)."""
    import warnings

    from asap.agent.report.plots import save_figure

    study = ledger.create_study("esc", toy_space, metric="loss\x1b[2J", direction="minimize")
    study.log_event("session", start=0.0, end=4.0, interrupted=False)
    for i in range(3):
        tid = study.start_trial({"x": i / 10, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
                                tool="tool\x1b]0;x\x07")
        study.finish_trial(tid, status="complete", metrics={"loss\x1b[2J": 1.0 - i / 10},
                           ended_at=i + 1.0)
        study.log_timing("train", float(i), i + 1.0, trial_number=i, tool="tool\x1b]0;x\x07")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert history(study, tmp_path / "h.png").stat().st_size > 5000
        assert timeline(study, tmp_path / "t.png").stat().st_size > 5000
    assert not [w for w in caught if "Glyph" in str(w.message)], [str(w.message) for w in caught]
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.set_title("a\x1bb")
    save_figure(fig, tmp_path / "f.png")
    assert ax.get_title() == "a?b"
    plt.close(fig)


def test_the_pictures_key_only_what_they_draw(ledger, toy_space, tmp_path, monkeypatch):
    """Issue 39 (9): the timeline's title names a speculation mark only when one is drawn;
    the latency plot says the call's kind by colour and its cache by fill, one meaning each."""
    import matplotlib.axes
    from matplotlib.figure import Figure

    from asap.agent.report.plots import llm_latency
    study = ledger.create_study("keys", toy_space, metric="loss", direction="minimize")
    study.log_event("session", start=0.0, end=16.0, interrupted=False)
    _trial(study, {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, "optuna:tpe",
           0.5, 2.0, 10.0)
    titles, figures = [], []
    set_title, savefig = matplotlib.axes.Axes.set_title, Figure.savefig
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda self, label, *a, **k: (
        titles.append(label), set_title(self, label, *a, **k))[1])
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (
        figures.append(self), savefig(self, *a, **k))[1])
    timeline(study, tmp_path / "a.png")
    study.log_timing("llm_call", 3, 5, prompt_tokens=200, cached_tokens=180, speculative=True)
    study.log_timing("llm_call", 6, 9, prompt_tokens=220, cached_tokens=0)
    study.log_event("speculation", accepted=True)
    timeline(study, tmp_path / "b.png")
    assert "speculation" not in titles[0]
    assert titles[1].endswith("(v accepted speculation)")
    llm_latency(study, tmp_path / "l.png")
    labels = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert labels == ["critical, mostly uncached (1)", "speculative, mostly cached (1)"]
