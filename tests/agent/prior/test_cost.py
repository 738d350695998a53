"""The cost model: predicted training seconds, and EI per second with cost-cooling."""

import dataclasses
import math

import pytest
from conftest import toy_objective
from fakes import ManualTime

from asap.agent.prior.cost import predict_seconds, span, tail, weight
from asap.agent.prior.fit import GP
from asap.agent.prior.ranking import brief, rank
from asap.tools.trials.clock import VirtualClock


def seconds_of(cfg):
    """Training time: sgd is 100x slower than adam here (the objective ignores the optimizer)."""
    return 1.0 if cfg["optimizer"] == "adam" else 100.0


def timed_study(ledger, toy_space, xs):
    """Trials on a virtual clock moved by hand, so each lasts exactly ``seconds_of`` its config."""
    study = ledger.create_study("c", toy_space, metric="loss", direction="minimize")
    time = ManualTime()
    study.clock = VirtualClock(origin=0.0, source=time)
    for i, x in enumerate(xs):
        cfg = {"x": x, "lr": 0.01, "n_layers": 1,
               "optimizer": "adam" if i % 2 else "sgd", **({} if i % 2 else {"momentum": 0.5})}
        tid = study.start_trial(cfg, tool="optuna:tpe")
        time.advance(seconds_of(cfg))
        study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})
    return study


XS = [-5.0, -4.0, -3.0, -1.0, 0.0, 0.5, 3.5, 4.0, 5.0, 4.5]


def test_durations_are_predicted_from_the_finished_trials(ledger, toy_space):
    study = timed_study(ledger, toy_space, XS)
    assert [t.duration for t in study.trials()][:2] == [100.0, 1.0]
    configs = [{"x": 1.0, "lr": 0.01, "n_layers": 1, "optimizer": "adam"},
               {"x": 1.0, "lr": 0.01, "n_layers": 1, "optimizer": "sgd", "momentum": 0.5}]
    cheap, dear = predict_seconds(study.space, study.trials(), configs, GP())
    assert 0.5 < cheap < 2.0 and 50 < dear < 200
    assert predict_seconds(study.space, study.trials()[:2], configs, GP()) is None  # too few


def test_expected_improvement_per_second_prefers_the_cheap_proposal(ledger, toy_space):
    """The slow proposal sits at the optimum (x=2), the cheap one near it (x=1.6): by EI alone
    the slow one is A; per second, the cheap one is, and both carry their predicted time."""
    study = timed_study(ledger, toy_space, XS)
    slow = ("optuna:tpe", {"x": 2.0, "lr": 0.01, "n_layers": 1, "optimizer": "sgd",
                           "momentum": 0.5})
    cheap = ("nevergrad:DE", {"x": 1.6, "lr": 0.01, "n_layers": 1, "optimizer": "adam"})
    by_ei, scores = rank(study, [cheap, slow], cost_weight=0.0)
    assert by_ei == [slow, cheap] and scores[0].ei > scores[1].ei
    per_s, scores = rank(study, [cheap, slow], cost_weight=1.0)
    assert per_s == [cheap, slow]
    assert scores[0].seconds < 2 and scores[1].seconds > 50
    assert brief(scores[1]).endswith(" min") and "~" in brief(scores[1])
    assert rank(study, [cheap, slow], cost_weight=1.0) == (per_s, scores)  # deterministic


def test_the_cost_weight_cools_over_the_time_budget():
    assert weight(0.0, 3600.0) == 1.0
    assert weight(900.0, 3600.0) == pytest.approx(0.75)
    assert weight(4000.0, 3600.0) == 0.0
    assert weight(123.0, None) == 1.0  # no budget: per second throughout


@pytest.mark.parametrize(("seconds", "text"), [(0.004, "~0.004 s"), (4.2, "~4.2 s"),
                                               (180.0, "~3 min"), (5400.0, "~1.5 h")])
def test_predicted_durations_read_in_a_unit_people_use(seconds, text):
    assert span(seconds) == text


def test_a_reused_kernel_still_conditions_on_every_new_point():
    """Between refits the GP keeps its hyperparameters but not its data: a new point moves the
    prediction at that point (else the ranking would ignore the latest trials)."""
    gp = GP()
    xs = [[i / 40] for i in range(40)]
    ys = [math.sin(6 * x[0]) for x in xs]
    gp.predict(xs, ys, [[0.5]])
    kernel = gp._kernel
    mean, _ = gp.predict([*xs, [0.99]], [*ys, 5.0], [[0.99]])
    assert gp._kernel is kernel  # 41 points: no refit (grown by under 20 %)
    assert mean[0] > 2.0
    gp.predict([*xs, *([0.5 + i / 100] for i in range(10))], [*ys, *[0.0] * 10], [[0.5]])
    assert gp._kernel is not kernel  # 50 points: refitted


def test_a_kernel_fitted_ahead_serves_the_round_after_one_more_result():
    """Fitted while a trial trains (on the points before it), the kernel serves the round on
    those points and its result without a fit on the critical path, and that point still
    moves the prediction; the round after that fits again (fewer than 20 points)."""
    gp = GP()
    xs = [[i / 10] for i in range(10)]
    ys = [math.sin(6 * x[0]) for x in xs]
    gp.fit_ahead(xs, ys)
    kernel = gp._kernel
    mean, _ = gp.predict([*xs, [0.95]], [*ys, 5.0], [[0.95]])
    assert gp._kernel is kernel and mean[0] > 2.0
    gp.predict([*xs, [0.95], [0.05]], [*ys, 5.0, 0.0], [[0.5]])
    assert gp._kernel is not kernel


def test_a_speculative_round_does_not_refit_the_kernel(ledger, toy_space):
    study = timed_study(ledger, toy_space, XS)
    offers = [("t", {"x": 1.0, "lr": 0.01, "n_layers": 1, "optimizer": "adam"})]
    rank(study, offers)
    from asap.agent.prior.ranking import _GPS
    kernel = _GPS[study]["value"]._kernel
    guess = dataclasses.replace(study.trials()[-1], id=-1, value=0.3,
                                config={**offers[0][1], "x": 1.9})
    rank(study, offers, extra=[guess])
    assert _GPS[study]["value"]._kernel is kernel


def test_a_trial_that_cannot_finish_in_the_time_left_is_worth_nothing():
    """Each EI is scaled by the share of the time left its trial would leave: one that cannot
    finish (it would be stopped at the budget) ranks last whatever its EI."""
    from asap.agent.prior.cost import fits, per_second
    assert fits(30.0, None) == 1.0 and fits(30.0, 120.0) == 0.75 and fits(200.0, 120.0) == 0.0
    assert fits(1.0, 0.0) == 0.0
    key = per_second([1.0, 0.5], [200.0, 10.0], 0.0, left_s=120.0)
    assert key == [0.0, 0.5 * (1 - 10 / 120)]


def test_a_running_trial_costs_at_least_the_time_it_has_run(ledger, toy_space):
    """N workers: the finished trials took 1-4 s, longer as x grows; one still running at x=5
    has run for 2,000 s on the clock. The cost model reads that region as dear before the trial
    lands, instead of as cheap because its long trials have not landed yet."""
    study = ledger.create_study("c", toy_space, metric="loss", direction="minimize")
    time = ManualTime()
    study.clock = VirtualClock(origin=0.0, source=time)
    adam = {"lr": 0.01, "n_layers": 1, "optimizer": "adam"}
    for x in (-5.0, -3.0, -1.0, 1.0, 2.0, 3.0):
        tid = study.start_trial({"x": x, **adam}, tool="optuna:tpe")
        time.advance(1.0 + (x + 5) / 3)
        study.finish_trial(tid, status="complete", metrics={"loss": 1.0})
    near = ("optuna:tpe", {"x": 4.8, **adam})
    before = rank(study, [near])[1][0].seconds
    study.start_trial({"x": 5.0, **adam}, tool="optuna:tpe")
    time.advance(2000.0)
    after = rank(study, [near])[1][0].seconds
    assert before < 10.0 and after > 10 * before


def test_the_last_wave_prices_a_straggler_down(ledger, toy_space):
    """The last trials of a cap with several workers: a proposal predicted to take k times what
    keeps the workers busy anyway (the longest remainder in flight, or a typical trial) keeps
    1/k of its worth; shorter ones keep all of it."""
    done = timed_study(ledger, toy_space, XS).trials()  # 1 s and 100 s alternating: median 100
    assert tail([1.0, 100.0, 1000.0], [50.0], done) == [1.0, 1.0, 0.1]
    assert tail([1.0, 100.0, 1000.0], [400.0], done) == [1.0, 1.0, 0.4]  # a longer one in flight
    assert tail([10.0], [], []) == [1.0]  # nothing known: nothing priced


def test_early_in_the_cap_only_a_trial_longer_than_the_rest_of_the_run_is_priced_down(
        ledger, toy_space):
    """Five trials left per worker: the workers are busy for about five typical trials (500 s)
    anyway, so a 1000 s proposal keeps half its worth and a 400 s one all of it."""
    done = timed_study(ledger, toy_space, XS).trials()
    assert tail([1.0, 400.0, 1000.0], [50.0], done, waves=5) == [1.0, 1.0, 0.5]


def test_the_last_wave_picks_the_proposal_that_ends_with_the_others(ledger, toy_space):
    """By EI alone the slow proposal at the optimum is A (100 s); as one of the last trials, with
    the trial in flight and a typical trial taking a second, the cheap one near it is."""
    study = ledger.create_study("w", toy_space, metric="loss", direction="minimize")
    time = ManualTime()
    study.clock = VirtualClock(origin=0.0, source=time)
    for x in (-5.0, -4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 4.0, 5.0):
        cfg = {"x": x, "lr": 0.01, "n_layers": 1, **({"optimizer": "sgd", "momentum": 0.5}
                                                      if x in (1.0, 3.0) else
                                                      {"optimizer": "adam"})}
        tid = study.start_trial(cfg, tool="optuna:tpe")
        time.advance(seconds_of(cfg))
        study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})
    study.start_trial({"x": -2.0, "lr": 0.01, "n_layers": 1, "optimizer": "adam"}, tool="t")
    slow = ("optuna:tpe", {"x": 2.0, "lr": 0.01, "n_layers": 1, "optimizer": "sgd",
                           "momentum": 0.5})
    cheap = ("nevergrad:DE", {"x": 1.2, "lr": 0.01, "n_layers": 1, "optimizer": "adam"})
    assert rank(study, [cheap, slow])[0] == [slow, cheap]
    assert rank(study, [cheap, slow], waves=1)[0] == [cheap, slow]
    assert rank(study, [cheap, slow], waves=1000)[0] == [slow, cheap]  # early: the run is long
