"""Speculation's building blocks: the accept test, the kNN surrogate, the tools' fork."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import toy_objective

from asap.agent.prior.surrogate import Surrogate, distance
from asap.agent.speculation import accept
from asap.tools.hpo import panel
from asap.tools.hpo.portfolio import Portfolio

PANEL = [(t.library, t.algorithm) for t in panel.PANEL]


def _study(ledger, toy_space, n=12):
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    portfolio = Portfolio(study)
    for i in range(n):
        cfg = portfolio.ask(*PANEL[i % len(PANEL)])[0]
        tid = study.start_trial(cfg, tool=":".join(PANEL[i % len(PANEL)]))
        study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})
    return study, portfolio


@pytest.mark.parametrize("pred, actual, tau, ok", [
    (1.04, 1.0, 0.05, True), (1.06, 1.0, 0.05, False), (-0.98, -1.0, 0.05, True),
    (1e-13, 0.0, 0.1, True), (0.1, 0.0, 0.1, False),
])
def test_accept_is_relative_error_against_tau(pred, actual, tau, ok):
    assert accept(pred, actual, tau) is ok


def test_distance_handles_log_categorical_and_inactive(toy_space):
    a = {"x": 0.0, "lr": 0.01, "n_layers": 1, "optimizer": "adam"}
    assert distance(toy_space, a, a) == 0.0
    assert distance(toy_space, a, {**a, "lr": 0.1}) == pytest.approx(0.25)  # one decade of four
    assert distance(toy_space, a, {**a, "optimizer": "sgd", "momentum": 0.5}) == pytest.approx(
        (1.0 + 0.25) ** 0.5)


def test_surrogate_predicts_from_neighbours(ledger, toy_space):
    study, _ = _study(ledger, toy_space)
    surrogate = Surrogate(study)
    seen = study.trials()[3]
    assert surrogate.predict(seen.config) == seen.value  # an exact repeat: its own value
    near = {**seen.config, "x": min(5.0, seen.config["x"] + 0.01)}
    values = sorted(t.value for t in study.trials())
    assert values[0] <= surrogate.predict(near) <= values[-1]
    empty = ledger.create_study("e", toy_space, metric="loss", direction="minimize")
    assert Surrogate(empty).predict(seen.config) is None


def test_a_fork_learns_the_prediction_and_leaves_the_real_tools_alone(ledger, toy_space):
    study, portfolio = _study(ledger, toy_space)
    cfg = portfolio.ask("optuna", "tpe")[0]
    tid = study.start_trial(cfg, tool="optuna:tpe")  # trial t trains
    running = study.trial(tid)
    guess = dataclasses.replace(running, status="complete", value=0.0)
    told = {k: o.n_told for k, o in portfolio._optimizers.items()}
    fork = portfolio.fork([guess])
    assert all(fork._optimizers[k].n_told == n + 1 for k, n in told.items())
    assert [fork.ask(*p)[0] for p in PANEL]  # every tool proposes in the fork
    fork.ask("optuna", "random")  # a tool created in the fork learns the prediction too
    assert fork._optimizers["optuna:random"].n_told == len(study.finished_ids()) + 1
    assert {k: o.n_told for k, o in portfolio._optimizers.items()} == told
    assert study.trial(tid).status == "running" and len(study.trials()) == 13  # ledger untouched
    study.finish_trial(tid, status="complete", metrics={"loss": 1.0})
    fork.sync()  # the real trial t is not told to the fork on top of its stand-in
    assert fork._optimizers["optuna:tpe"].n_told == told["optuna:tpe"] + 1
    portfolio.sync()
    assert portfolio._optimizers["optuna:tpe"].n_told == told["optuna:tpe"] + 1
