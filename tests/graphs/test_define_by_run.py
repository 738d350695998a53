"""Optuna objectives run as they are: ``asap.optimize(objective, n_trials=...)`` with no space,
Optuna's own tutorial objectives (tests/userwl/optuna_tutorial.py, copied unchanged), in worker
processes as a user's script runs them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import asap
from asap.tools.ledger.store import Ledger
from asap.tools.trials.define_by_run import SuggestTrial, learn

sys.path.insert(0, str(Path(__file__).parents[1] / "userwl"))
import optuna_tutorial as tutorial  # noqa: E402


def run(tmp_path, objective, n_trials, **kw):
    return asap.optimize(objective, n_trials=n_trials, llm=False, db=str(tmp_path / "d.db"),
                         show_progress_bar=False, **kw)


def test_optunas_first_tutorial_objective_runs_unchanged(tmp_path):
    result = run(tmp_path, tutorial.quadratic, 12)
    assert len(result.trials) == 12 and result.complete == 12
    assert result.best_value == min(t.value for t in result.trials) < 1.0  # minimized
    study = Ledger(str(tmp_path / "d.db")).open_study(result.study)
    x = study.space["x"]
    assert (x.low, x.high) == (-10, 10)  # learned from the suggest call
    assert result.trials[0].params == {"x": 0.0}  # the first trial: the middle of the range
    assert len({t.params["x"] for t in result.trials}) >= 10  # then the tools searched it


def test_a_conditional_space_is_learned_and_every_branch_searched(tmp_path):
    result = run(tmp_path, tutorial.iris_classifier, 10, direction="maximize")
    study = Ledger(str(tmp_path / "d.db")).open_study(result.study)
    assert study.space.names == ["classifier", "svc_c", "rf_max_depth"]
    assert study.space["svc_c"].when.in_ == ["SVC"]
    assert study.space["rf_max_depth"].when.in_ == ["RandomForest"]
    for t in result.trials:  # each trial holds exactly the parameters its branch asked
        branch = {"SVC": "svc_c", "RandomForest": "rf_max_depth"}[t.params["classifier"]]
        assert set(t.params) == {"classifier", branch}
    assert {t.params["classifier"] for t in result.trials} == {"SVC", "RandomForest"}
    assert result.best_value > 0.9 and result.complete == 10
    assert len(result.trials) == 10  # the sessions the space grew through add up to the call


def test_optunas_pruning_tutorial_reports_and_prunes(tmp_path):
    result = run(tmp_path, tutorial.seeded_pruned_sgd, 10, pruner="median")
    states = [t.state.name for t in result.trials]
    assert states[:4] == ["COMPLETE"] * 4  # the median rule waits for 4 complete trials
    assert "PRUNED" in states
    pruned = next(t for t in result.trials if t.state.name == "PRUNED")
    assert len(pruned.intermediate_values) < 100  # raised TrialPruned when told to


def test_the_trial_api_beyond_suggest(tmp_path):
    result = run(tmp_path, tutorial.with_attrs, 5, direction="maximize")
    for t in result.trials:
        assert t.user_attrs["seen"] == {"number": t.number, "params": t.params}
        assert t.params["x"] in (0.0, 0.25, 0.5, 0.75, 1.0) and t.params["n"] in (1, 3, 5, 7, 9)
    again = run(tmp_path, tutorial.with_attrs, 2, direction="maximize", study=result.study)
    assert len(again.trials) == 7  # resumed on the learned space, numbers going on


def test_bad_define_by_run_input_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs its search space: pass space="):
        run(tmp_path, lambda config, report: 0.0, 2)
    with pytest.raises(ValueError, match="declares its space with its suggest calls"):
        run(tmp_path, tutorial.quadratic, 2, space={"x": {"type": "float", "low": 0, "high": 1}})
    assert not (tmp_path / "d.db").exists()  # refused before anything was written
    with pytest.raises(ValueError, match=r"'x' asks float \[0.0, 2.0\], but an earlier trial "
                                         r"asked float \[0.0, 1.0\]"):
        run(tmp_path, tutorial.changes_its_range, 4)
    with pytest.raises(ValueError, match="suggested no parameter"):
        run(tmp_path, tutorial.suggests_nothing, 3)
    first = run(tmp_path, tutorial.edited, 2, study="e", isolate=False)
    tutorial.HIGH = 5.0  # the script edited, then the study resumed
    try:
        with pytest.raises(ValueError, match=r"'x' asks float \[0.0, 5.0\], but an earlier "
                                             r"trial asked float \[0.0, 1.0\]"):
            run(tmp_path, tutorial.edited, 2, study="e", isolate=False)
    finally:
        tutorial.HIGH = 1.0
    assert [t.state.name for t in first.trials] == ["COMPLETE", "COMPLETE"]  # nothing written


def test_which_objectives_are_optunas_is_read_from_their_signature():
    from asap.tools.trials.define_by_run import takes_trial

    def optuna_style(trial): ...
    def optuna_extra(trial, scale=2): ...
    def asap_style(config, report): ...
    def asap_optional_report(config, report=None): ...  # callable both ways: asap's
    assert takes_trial(optuna_style) and takes_trial(optuna_extra)
    assert not takes_trial(asap_style) and not takes_trial(asap_optional_report)


def test_conditions_are_read_from_which_trials_asked_what():
    def t(used, suggested):  # a finished trial's record, as the trainer stores it
        from asap.tools.types import Trial
        return Trial(id=len(used), number=0, config={}, tool="x", status="complete", value=1.0,
                     metrics={}, intermediate={}, error=None, fidelity=None, started_at=0.0,
                     ended_at=1.0, duration=1.0, meta={"used": used, "suggested": suggested})
    f = {"type": "float", "low": 0.0, "high": 1.0}
    c = {"type": "categorical", "choices": ["a", "b", "c"]}
    trials = [t({"k": "a", "u": 0.5, "depth": 0.2}, {"k": c, "u": f, "depth": f}),
              t({"k": "b", "depth": 0.9, "w": 0.1}, {"k": c, "depth": f, "w": f})]
    space = learn(trials, {})
    assert space["u"]["when"] == {"parent": "k", "in": ["a"]}
    assert space["w"]["when"] == {"parent": "depth", "gt": 0.2}  # the nearest telling one
    assert "when" not in space["depth"] and list(space) == ["k", "u", "depth", "w"]
    trial = SuggestTrial({"k": "b"}, lambda step, value: False, space, number=3)
    assert trial.suggest_categorical("k", ["a", "b", "c"]) == "b"
    assert trial.suggest_float("u", 0.0, 1.0) == 0.5  # not in the config: the middle
    assert trial.params == {"k": "b", "u": 0.5} and trial.number == 3


def test_the_readmes_optuna_example_runs_as_written(tmp_path):
    import re
    import subprocess

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("**Python, for Optuna users**")[1]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    assert "def objective(trial):" in code and "asap.optimize(objective, n_trials=20)" in code
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    best = eval(done.stdout.strip().splitlines()[-1])  # the printed best_params
    assert set(best) == {"x"} and abs(best["x"] - 2) < 2


def test_a_time_budget_is_the_calls_across_the_sessions_its_space_grows_through(tmp_path,
                                                                              monkeypatch):
    import asap.graphs.define_by_run as dbr

    budgets = []
    real_tune = dbr.tune

    def tune(cfg, **kw):  # the real session, its budget noted
        budgets.append(cfg.time_budget_s)
        return real_tune(cfg, **kw)

    monkeypatch.setattr(dbr, "tune", tune)
    result = run(tmp_path, tutorial.iris_classifier, 4, direction="maximize", timeout=600)
    assert len(result.trials) == 4 and len(budgets) >= 2  # the space grew: several sessions
    assert budgets[0] == 600 and all(b < a for a, b in zip(budgets, budgets[1:], strict=False))


@pytest.mark.parametrize("isolate", [True, False])
def test_the_placeholder_asks_no_tool_and_its_trial_loads_them_in_a_worker(tmp_path, isolate):
    """The first trial (the placeholder: every suggest at its middle) is proposed by no tool;
    while it trains in a worker process the panel's libraries load on a thread of their own
    (a new process: Nevergrad is imported with no Nevergrad tool made yet); in this process
    (``isolate=False``) the objective would compete with that import, and nothing loads."""
    import subprocess
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1] / "userwl")!r})
import asap, optuna_tutorial
from asap.tools.ledger.store import Ledger
result = asap.optimize(optuna_tutorial.quadratic, n_trials=1, llm=False, db="d.db",
                       isolate={isolate}, show_progress_bar=False)
study = Ledger("d.db").open_study(result.study)
print(study.trials()[0].tool, "nevergrad" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["asap:untried", str(isolate)]
