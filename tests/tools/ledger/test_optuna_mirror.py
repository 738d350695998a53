"""The Optuna storage mirror: optuna.load_study and optuna-dashboard see what the ledger holds."""

from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest

from asap.cli.main import main
from asap.tools.hpo.space import Space
from asap.tools.ledger.optuna_mirror import MirrorError, OptunaMirror
from asap.tools.ledger.store import Ledger

SPACE = Space.from_dict({
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"parent": "opt", "in": ["sgd"]}},
})


def _study(tmp_path, name="m"):
    study = Ledger(tmp_path / "l.db").create_study(name, SPACE, metric="acc", direction="maximize",
                                                   workload="toy")
    rows = [({"x": 0.2, "opt": "adam"}, "complete", 0.2), ({"x": 0.7, "opt": "sgd", "momentum": 0.9},
            "complete", 0.7), ({"x": 0.4, "opt": "adam"}, "failed", None)]
    for config, status, value in rows:
        tid = study.start_trial(config, tool="nevergrad:DE" if status == "failed" else "optuna:tpe")
        study.report(tid, 1, config["x"] / 2)
        study.finish_trial(tid, status=status, metrics={"acc": value} if value else {},
                           error="boom" if status == "failed" else None)
    return study


def test_load_study_on_the_mirror_returns_the_ledgers_trials(tmp_path):
    study = _study(tmp_path)
    url = f"sqlite:///{tmp_path}/optuna.db"
    assert OptunaMirror(study, url).sync() == 3 and OptunaMirror(study, url).sync() == 0
    mirrored = optuna.load_study(study_name="m", storage=url)
    best = study.best()
    assert mirrored.best_value == best.value and mirrored.best_params == best.config
    assert [t.params for t in mirrored.trials] == [t.config for t in study.trials()]
    assert [t.state.name for t in mirrored.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert mirrored.trials[1].intermediate_values == {1: 0.35}
    assert [t.user_attrs["tool"] for t in mirrored.trials] == [t.tool for t in study.trials()]
    assert "momentum" not in mirrored.trials[0].params  # inactive: absent, as define-by-run


def test_a_bad_storage_or_another_space_is_one_clear_error_and_writes_nothing(tmp_path, capsys):
    study = _study(tmp_path)
    with pytest.raises(MirrorError, match="cannot open the Optuna storage 'nonsense'"):
        OptunaMirror(study, "nonsense")
    url = f"sqlite:///{tmp_path}/other.db"
    optuna.create_study(study_name="m", storage=url, direction="maximize")  # someone else's
    with pytest.raises(MirrorError, match="already has a study 'm' with another search space"):
        OptunaMirror(study, url)
    assert len(optuna.load_study(study_name="m", storage=url).trials) == 0
    db = tmp_path / "new.db"
    assert main(["tune", "hpobench:australian", "--db", str(db), "--study", "m",
                 "--optuna-storage", url]) == 2
    assert "another search space" in capsys.readouterr().err and not db.exists()


def test_export_and_optuna_dashboard_lists_the_study(tmp_path, capsys):
    import optuna_dashboard
    _study(tmp_path, name="dash")
    url = f"sqlite:///{tmp_path}/dash.db"
    assert main(["export", "dash", "--db", str(tmp_path / "l.db"), "--optuna-storage", url]) == 0
    assert "3 trials of 'dash' mirrored" in capsys.readouterr().out

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(url), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as r:
            studies = json.loads(r.read())["study_summaries"]
    finally:
        server.shutdown()
    assert [(s["study_name"], s["directions"]) for s in studies] == [("dash", ["maximize"])]



def test_the_mirror_round_trip_tells_what_the_ledger_holds(tmp_path):
    """Every field, trial by trial, through optuna.load_study: the evaluated configuration as
    params (the proposal beside it), the trial's own times, a pruned trial's last value."""
    from asap.tools.trials.trainer import Trainer
    from asap.tools.workloads import resolve
    wl = resolve("hpobench:australian")
    study = Ledger(tmp_path / "t.db").create_study("t", wl.space, metric=wl.metric,
                                                   direction=wl.direction, workload=wl.ref)
    trainer = Trainer(study, wl, in_process=True)
    for cfg in ({"alpha": 3e-4, "batch_size": 30, "depth": 2, "learning_rate_init": 2e-3,
                 "width": 900}, {"alpha": 1e-6, "batch_size": 200, "depth": 1,
                                 "learning_rate_init": 1e-4, "width": 20}):
        trainer.run(cfg, tool="optuna:tpe")
    tid = study.start_trial({**study.trials()[0].config, "depth": 3}, tool="nevergrad:DE")
    study.report(tid, 1, 0.61)
    study.report(tid, 3, 0.64)
    study.finish_trial(tid, status="pruned")
    url = f"sqlite:///{tmp_path}/o.db"
    OptunaMirror(study, url).sync()
    got = optuna.load_study(study_name="t", storage=url).trials
    for theirs, ours in zip(got, study.trials(), strict=True):
        assert theirs.params == ours.evaluated
        assert theirs.user_attrs.get("proposed", ours.config) == ours.config
        assert theirs.user_attrs["tool"] == ours.tool
        assert theirs.datetime_start.timestamp() == pytest.approx(ours.started_at, abs=1e-3)
        assert theirs.datetime_complete.timestamp() == pytest.approx(ours.ended_at, abs=1e-3)
        assert theirs.duration.total_seconds() == pytest.approx(ours.duration, abs=1e-3)
        assert theirs.intermediate_values == {int(k): v for k, v in ours.intermediate.items()}
    assert got[0].params != got[0].user_attrs["proposed"]  # the table snapped it: both kept
    assert got[0].value == study.trials()[0].value and got[0].duration.total_seconds() > 0
    assert got[2].state.name == "PRUNED" and got[2].value == 0.64
