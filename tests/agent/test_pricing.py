"""Whether the LLM is worth asking: each call priced against a trial, and its record."""

import pytest

from asap.agent.pricing import FIRST_CALL_S, SHARE, llm_due


@pytest.fixture
def study(ledger, toy_space):
    return ledger.create_study("p", toy_space, metric="loss", direction="minimize")


def _trials(study, values, seconds=1.0, by=None):
    """Finished trials of ``seconds`` each (timing rows as the trainer writes them), and a
    decision event per trial when ``by`` decided them."""
    for value in values:
        tid = study.start_trial({"x": value, "lr": 0.01, "n_layers": 1, "optimizer": "adam"},
                                tool="optuna:tpe")
        study.finish_trial(tid, status="complete", metrics={"loss": value})
        study.log_timing("train", 0.0, seconds, trial_number=study.trial(tid).number)
        if by is not None:
            study.log_event("decision", round=tid, trial=study.trial(tid).number, by=by[0],
                            choice=by[1], scores=[[value + 1.0, 0.1, 0.01]])


def _calls(study, seconds, n=3):
    for _ in range(n):
        study.log_timing("llm_call", 0.0, seconds, prompt_tokens=100, cached_tokens=90)


def test_nothing_is_priced_before_a_trial_has_finished(study):
    price = llm_due(study, budget=30)
    assert not price.ask and price.why == "no trial has finished yet"


def test_a_call_that_costs_little_beside_a_trial_is_asked_every_round_on_the_critical_path(
        study):
    _trials(study, [3.0, 2.0, 1.0], seconds=600.0)  # ten-minute trials
    _calls(study, 2.0)
    price = llm_due(study, budget=30)
    assert price.ask and price.cheap and price.ratio == pytest.approx(2.0 / 600.0)
    assert price.ratio <= SHARE


def test_a_call_that_costs_more_than_a_trial_leaves_the_round_to_the_prior(study):
    _trials(study, [3.0, 2.0, 1.0, 0.5], seconds=0.8)  # improving every trial: no stagnation
    price = llm_due(study, budget=30)  # no call measured: FIRST_CALL_S
    assert not price.ask and not price.cheap and price.ratio == pytest.approx(FIRST_CALL_S / 0.8)
    assert "has not yet beaten the prior" in price.why and "costs 250% of a trial" in price.why


def test_departures_that_paid_earn_the_calls_back(study):
    _trials(study, [3.0, 2.0], seconds=0.8)
    _calls(study, 2.0)
    _trials(study, [0.5], seconds=0.8, by=("llm", "B (nevergrad:DE)"))  # beat A's 1.5
    price = llm_due(study, budget=30)
    assert price.ask and not price.cheap and "1 of its 1 departures from the prior paid" in \
        price.why


def test_a_stagnation_point_asks_once_while_the_call_is_a_small_share_of_what_is_left(study):
    _trials(study, [1.0, 2.0, 2.0, 2.0, 2.0, 2.0], seconds=1.0)  # no better one in 5
    _calls(study, 0.4)
    price = llm_due(study, budget=20)  # patience: 5 trials; 14 s of training left
    assert price.ask and not price.cheap and "no better trial in the last 5" in price.why
    assert not llm_due(study, budget=7).ask  # 1 s left: a 0.4-s call is 40 % of it
    _trials(study, [2.5], seconds=1.0, by=("llm", "A (optuna:tpe)"))  # asked at this point
    assert not llm_due(study, budget=20).ask  # once per stagnation point
    _trials(study, [0.5], seconds=1.0)  # a new best: the next stagnation point may ask again
    assert not llm_due(study, budget=20).ask


def test_with_n_workers_a_call_is_priced_against_how_often_a_worker_frees_up(study):
    _trials(study, [3.0, 2.0, 1.0], seconds=10.0)
    _calls(study, 0.3)
    assert llm_due(study, budget=30, workers=1).cheap  # 3 % of a trial
    four = llm_due(study, budget=30, workers=4)  # a worker frees up every 2.5 s: 12 %
    assert not four.cheap and four.ratio == pytest.approx(0.12)
