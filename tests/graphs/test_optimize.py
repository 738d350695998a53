"""asap.optimize for people coming from Optuna: the tutorial's shapes, with the import changed."""

from __future__ import annotations

import os
import time
import warnings

import optuna
import pytest

import asap

SPACE = {"x": {"type": "float", "low": -5.0, "high": 5.0},
         "kind": {"type": "categorical", "choices": [None, "a", "b"]}}


def objective(config, report):
    """Optuna's tutorial objective, reporting as it goes (``trial.report``)."""
    x = config["x"]
    for step in range(3):
        report(step, (x - 2) ** 2 + 1 / (step + 1))
    return (x - 2) ** 2 + (0.5 if config["kind"] is None else 0.0)


def run(tmp_path, n_trials=6, **kw):
    return asap.optimize(objective, SPACE, n_trials=n_trials, direction="minimize", llm=False,
                         isolate=False, db=str(tmp_path / "o.db"), show_progress_bar=False, **kw)


def test_the_result_reads_like_an_optuna_study(tmp_path):
    seen = []

    def callback(study, trial):  # Optuna's signature; reads trial.params and study.best_value
        seen.append((trial.number, trial.params["x"], trial.state.name, study.best_value))

    result = run(tmp_path, callbacks=[callback])
    trials = result.trials
    assert [t.number for t in trials] == list(range(6)) == [n for n, *_ in seen]
    assert all(isinstance(t, optuna.trial.FrozenTrial) for t in trials)
    assert result.best_value == min(t.value for t in trials) == result.best_trial.value
    assert result.best_params == result.best_trial.params and "x" in result.best_params
    assert all(t.user_attrs["tool"] and t.duration is not None for t in trials)
    assert trials[0].intermediate_values.keys() == {0, 1, 2}
    assert seen[-1][3] == result.best_value  # the view a callback gets is current
    frame = result.trials_dataframe()
    assert {"number", "value", "datetime_start", "datetime_complete", "duration", "params_x",
            "params_kind", "user_attrs_tool", "state"} <= set(frame.columns)
    assert list(frame["state"]) == ["COMPLETE"] * 6
    study = result.to_optuna()
    assert study.best_value == result.best_value
    assert set(optuna.importance.get_param_importances(study)) == {"x", "kind"}
    assert result.complete == 6 and result.wall_clock_s > 0  # the run's numbers read too
    # Optuna's own pictures of it, with what asap installs (the plotly ones need plotly).
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot_optimization_history(study)
    assert len(axes.lines) + len(axes.collections) >= 1
    plt.close("all")


def test_the_direction_is_minimize_unless_given_as_in_optuna(tmp_path):
    result = asap.optimize(objective, SPACE, n_trials=4, llm=False, isolate=False,
                           db=str(tmp_path / "d.db"), show_progress_bar=False)
    assert result.to_optuna().direction == optuna.study.StudyDirection.MINIMIZE
    assert result.best_value == min(t.value for t in result.trials)


def test_n_trials_means_that_many_more_and_each_call_is_a_new_study(tmp_path):
    first = run(tmp_path, n_trials=3)
    second = run(tmp_path, n_trials=2)
    assert second.study_name != first.study_name and len(second.trials) == 2
    resumed = run(tmp_path, n_trials=2, study=first.study_name)
    assert resumed.study_name == first.study_name and len(resumed.trials) == 5
    named = run(tmp_path, n_trials=1, study_name="mine")  # Optuna's keyword
    assert named.study_name == "mine"


def napping(config, report):
    """A trial that waits and computes nothing: the cores stay idle while it runs."""
    time.sleep(0.5)
    return config["x"] ** 2


def test_idle_cores_are_measured_in_the_worker_and_named_at_the_end(tmp_path, capsys):
    """Each trial's CPU seconds are measured in its worker: a trial that keeps no core busy
    leaves the machine's cores idle. The call's last line names the workers that would fill
    them whenever the summary does (it does not on one core, nor when the tuner, not the
    trials, took most of the wall-clock: stats.cores)."""
    from asap.agent.report.stats import cores_line
    from asap.tools.ledger.store import Ledger
    from asap.tools.trials.resources import usable_cores

    result = asap.optimize(napping, {"x": {"type": "float", "low": -1.0, "high": 1.0}},
                           n_trials=6, llm=False, db=str(tmp_path / "n.db"))
    trains = Ledger(tmp_path / "n.db").open_study(result.study_name).timings("train")
    assert len(trains) == 6 and all(r["detail"]["cpu_s"] >= 0 for r in trains)
    c = result.cores
    assert (c["cores"], c["workers"]) == (usable_cores(), 1) and c["busy"] < 0.5
    assert c["suggest"] in (None, usable_cores())
    err = " ".join(capsys.readouterr().err.split())  # as one line, however it wrapped
    line = cores_line(c, "workers=")
    if line is None:
        assert "cores busy" not in err
    else:
        assert err.endswith(line) and f"workers={usable_cores()} would train" in line


def test_workers_grow_to_fill_the_cores_the_first_trials_left_idle(tmp_path, capsys,
                                                                    monkeypatch):
    """Workers not set: once three trials have shown a core idle (measured in their workers),
    the session grows to fill the cores, at most one worker per five trials left; workers=1
    keeps one. (The share of the wall-clock the trials took is timing; it is set aside here.)"""
    import asap.agent.cores as cores
    from asap.tools.ledger.store import Ledger
    from asap.tools.trials.resources import usable_cores

    monkeypatch.setattr(cores, "PACED_BY_TRAINING", 0.0)
    space = {"x": {"type": "float", "low": -1.0, "high": 1.0}}
    result = asap.optimize(napping, space, n_trials=13, llm=False, db=str(tmp_path / "g.db"))
    expected = min(usable_cores(), (13 - 3) // 5) if usable_cores() > 1 else 1
    study = Ledger(tmp_path / "g.db").open_study(result.study_name)
    assert result.cores["workers"] == expected and len(result.trials) == 13
    assert {t.meta["worker"] for t in study.trials()} == set(range(expected))
    assert {t.meta["worker"] for t in study.trials() if t.number < 3} == {0}
    err = " ".join(capsys.readouterr().err.split())
    if expected > 1:
        assert study.events("workers")[0]["detail"] | {"busy": 0} == {
            "after": 3, "to": expected, "busy": 0, "cores": usable_cores()}
        assert err.endswith(f"{expected} workers from trial 4 on (workers=1 keeps one)")
    pinned = asap.optimize(napping, space, n_trials=13, llm=False, workers=1,
                           db=str(tmp_path / "p.db"))
    assert pinned.cores["workers"] == 1 and pinned.cores["grown"] is None


def test_optunas_keywords_map_or_name_the_asap_setting(tmp_path, monkeypatch):
    result = run(tmp_path, n_trials=2, timeout=3600, n_jobs=1)
    assert len(result.trials) == 2
    from asap.agent.config import TuneConfig
    from asap.graphs.api import _from_optuna
    from asap.tools.trials import resources
    assert _from_optuna({"n_jobs": -1}) == {"workers": -1}
    monkeypatch.setattr(resources, "gpu_count", lambda: 0)  # -1: every core, as Optuna
    assert TuneConfig.make(workload="w", workers=-1).workers == resources.usable_cores()
    monkeypatch.setattr(resources, "gpu_count", lambda: 4)  # on a GPU host: one per GPU
    assert TuneConfig.make(workload="w", workers=-1).workers == 4
    with pytest.raises(ValueError, match="workers"):
        TuneConfig.make(workload="w", workers=-2)
    with pytest.raises(ValueError, match="a sampler must be an Optuna sampler object"):
        run(tmp_path, sampler="tpe")
    with pytest.raises(ValueError, match="storage= is Optuna's; .*optuna_storage="):
        run(tmp_path, storage="sqlite:///x.db")
    with pytest.raises(ValueError, match="pruner= takes a name here: 'median'"):
        run(tmp_path, pruner=optuna.pruners.MedianPruner())
    with pytest.raises(ValueError, match="n_trials must be a positive integer"):
        run(tmp_path, n_trials=0)


def test_a_callback_stops_the_study_as_optunas_study_stop(tmp_path):
    def stop_after_two(study, trial):
        if trial.number == 1:
            study.stop()

    result = run(tmp_path, n_trials=10, callbacks=[stop_after_two])
    assert len(result.trials) == 2


def test_progress_is_one_line_per_trial_off_a_terminal(tmp_path, capsys):
    asap.optimize(objective, SPACE, n_trials=2, direction="minimize", llm=False, isolate=False,
                  db=str(tmp_path / "p.db"))
    err = capsys.readouterr().err
    assert "[1/2] trial 0 complete: value " in err and "[2/2] trial 1 complete" in err
    assert "A new study created in memory" not in err  # asap's internal Optuna studies: quiet


def test_a_call_that_runs_nothing_says_why(tmp_path):
    space = {"k": {"type": "categorical", "choices": ["a", "b"]}}

    def tiny(config, report):
        return 1.0
    asap.optimize(tiny, space, n_trials=2, llm=False, isolate=False, study="t",
                  db=str(tmp_path / "t.db"), show_progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asap.optimize(tiny, space, n_trials=2, llm=False, isolate=False, study="t",
                      db=str(tmp_path / "t.db"), show_progress_bar=False)
    assert any("ran no trial: every configuration of the space has run" in str(w.message)
               for w in caught)


def pruning(config, report):
    """Stops itself as pruned past x = 3, after two reports (Optuna's ``raise TrialPruned``)."""
    report(0, config["x"])
    report(1, config["x"] / 2)
    if config["x"] > 3:
        raise asap.TrialPruned()
    return config["x"]


def test_an_objective_stops_its_trial_by_raising_trial_pruned(tmp_path):
    result = asap.optimize(pruning, {"x": {"type": "float", "low": 0.0, "high": 10.0}},
                           n_trials=8, direction="minimize", llm=False, isolate=False,
                           db=str(tmp_path / "p.db"), show_progress_bar=False)
    states = {t.state.name for t in result.trials}
    pruned = [t for t in result.trials if t.state.name == "PRUNED"]
    assert pruned and states <= {"COMPLETE", "PRUNED"}
    assert all(t.params["x"] > 3 and t.value == t.intermediate_values[1] for t in pruned)
    assert result.best_value <= 3
    # Optuna's own exception is taken alike, in a worker process too.
    from asap.tools.types import is_pruned
    assert is_pruned(optuna.TrialPruned()) and not is_pruned(ValueError())


def test_a_script_without_the_main_guard_is_told_the_line_to_add(tmp_path):
    """Issue 39 (8): an Optuna script never needed ``if __name__ == "__main__":``; here its
    workers import the script, so the call outside the guard is refused before any trial,
    naming the line; the same script with the guard runs."""
    import subprocess
    import sys
    body = ("import asap\n\ndef objective(config, report):\n    return config['x'] ** 2\n\n"
            "{call}asap.optimize(objective, {{'x': {{'type': 'float', 'low': -1, 'high': 1}}}}, "
            "n_trials=2, llm=False, db={db!r}, show_progress_bar=False)\n")
    bare, guarded = tmp_path / "bare.py", tmp_path / "guarded.py"
    bare.write_text(body.format(call="", db=str(tmp_path / "b.db")))
    guarded.write_text(body.format(call="if __name__ == '__main__':\n    ",
                                   db=str(tmp_path / "g.db")))
    out = subprocess.run([sys.executable, str(bare)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode != 0 and 'if __name__ == "__main__":' in out.stderr, out.stderr[-2000:]
    assert out.stderr.count("Traceback") == 1 and not (tmp_path / "b.db").exists()
    out = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]


def test_an_unguarded_script_with_an_imported_objective_runs_once(tmp_path):
    """The usual layout, an objective in a module and the call in a script, needs no guard (as
    with Optuna): the workers do not need the script, so they never run it again (they did,
    each starting the session anew inside a trial's worker, and every trial failed)."""
    import subprocess
    import sys
    (tmp_path / "objective_module.py").write_text(
        "def objective(config, report=None):\n    return config['x'] ** 2\n")
    script = tmp_path / "script.py"
    script.write_text(
        "import asap\nfrom objective_module import objective\nprint('SCRIPT RAN')\n"
        "r = asap.optimize(objective, {'x': {'type': 'float', 'low': -1, 'high': 1}}, "
        f"n_trials=3, llm=False, db={str(tmp_path / 'u.db')!r}, show_progress_bar=False)\n"
        "print([t.state.name for t in r.trials])\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("SCRIPT RAN") == 1 and "['COMPLETE', 'COMPLETE', 'COMPLETE']" \
        in out.stdout, out.stdout


def test_a_panel_of_the_users_choice_proposes(tmp_path):
    """The panel named proposes, with the initial design's Sobol points beside it (``design``,
    a setting of its own); ``design=None`` leaves the panel alone."""
    result = run(tmp_path, n_trials=8, panel=["optuna:gp", "nevergrad:DE"])
    tools = {t.user_attrs["tool"] for t in result.trials}
    assert tools <= {"optuna:gp", "nevergrad:DE", "optuna:qmc", "optuna:random"}
    assert "optuna:gp" in tools
    (other := tmp_path / "alone").mkdir()
    alone = run(other, n_trials=8, panel=["optuna:gp", "nevergrad:DE"], design=None)
    tools = {t.user_attrs["tool"] for t in alone.trials}
    assert tools <= {"optuna:gp", "nevergrad:DE", "optuna:random"} and "optuna:gp" in tools


def test_optunas_sampler_object_proposes_beside_the_panel(tmp_path):
    """sampler= as an Optuna user writes it: that object (its settings and seed, a copy of it)
    proposes every round, first in the panel, beside asap's tools (the prior then ranks them
    all); the object passed is left untouched."""
    import copy

    mine = optuna.samplers.RandomSampler(seed=7)
    before = copy.deepcopy(mine)
    result = run(tmp_path, n_trials=5, sampler=mine)
    from asap.tools.ledger.store import Ledger

    study = Ledger(tmp_path / "o.db").open_study(result.study_name)
    offers = [e["detail"]["offers"] for e in study.events("decision")]
    assert offers[0][0][0] == "optuna:RandomSampler"  # before the prior scores: the panel's order
    assert mine._rng.rng.randint(2**30) == before._rng.rng.randint(2**30)  # asap asked a copy


def test_a_panel_mixes_tools_names_and_sampler_objects(tmp_path):
    own = optuna.samplers.TPESampler(seed=1, n_startup_trials=2)
    result = run(tmp_path, n_trials=6, panel=[own, "nevergrad:DE"])
    tools = {t.user_attrs["tool"] for t in result.trials}
    assert "optuna:TPESampler" in tools and tools <= {"optuna:TPESampler", "nevergrad:DE",
                                                      "optuna:qmc", "optuna:random"}
    with_names = run(tmp_path, n_trials=2, sampler=optuna.samplers.RandomSampler(seed=2),
                     panel="optuna:tpe, nevergrad:DE")  # the setting's own spelling
    assert len(with_names.trials) == 2
    with pytest.raises(ValueError, match="unknown tool 'optuna:nope'"):
        run(tmp_path, panel=[own, "optuna:nope"])
    with pytest.raises(ValueError, match="distinct tools"):
        run(tmp_path, panel=[own, optuna.samplers.TPESampler(seed=2)])


@pytest.mark.parametrize("by_run", [False, True])
def test_the_ledger_file_alone_holds_the_run_when_the_call_returns(tmp_path, by_run):
    """SQLite's write-ahead log is copied into the file at the session's end (and after a
    define-by-run space grows): a copy of the ``.db`` alone, without its ``-wal``, has every
    trial."""
    import shutil

    from asap.tools.ledger.store import Ledger

    if by_run:
        import sys
        from pathlib import Path
        sys.path.insert(0, str(Path(__file__).parents[1] / "userwl"))
        import optuna_tutorial
        result = asap.optimize(optuna_tutorial.quadratic, n_trials=4, llm=False, isolate=False,
                               db=str(tmp_path / "o.db"), show_progress_bar=False)
    else:
        result = run(tmp_path, n_trials=4)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "o.db", tmp_path / "copy" / "o.db")
    copy = Ledger(tmp_path / "copy" / "o.db", readonly=True).open_study(result.study)
    assert len(copy.trials()) == 4 and copy.space.names == (["x"] if by_run else ["x", "kind"])
