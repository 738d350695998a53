"""The self-tuning policy on synthetic logs: deterministic, bounded, one step per rule."""

from __future__ import annotations

import pytest

from asap.agent.selftune import Bounds, Knobs, Observed, decide, observe, selftune


def seen(**kw) -> Observed:
    base = dict(llm_s=1.0, llm_trend=0.05, train_s=5.0, accept_rate=0.5, wasted_share=0.05,
                cached_share=0.95, prompt_tokens=2000)
    return Observed(**{**base, **kw})


def test_slow_calls_past_training_deepen_speculation():
    knobs, why = decide(Knobs(depth=1), seen(llm_s=3.0, llm_p90=7.0, train_s=5.0, accept_rate=0.8))
    assert knobs.depth == 2 and "depth 1->2" in why[0]


def test_an_llm_slower_than_training_at_the_median_gains_nothing_from_depth():
    # Chained decisions are sequential: when the LLM is the bottleneck more depth adds nothing.
    knobs, _ = decide(Knobs(depth=1), seen(llm_s=6.0, llm_p90=9.0, train_s=5.0, accept_rate=0.8))
    assert knobs.depth == 1
    knobs, _ = decide(Knobs(depth=1), seen(llm_s=1.0, llm_p90=2.0, train_s=5.0, accept_rate=0.8))
    assert knobs.depth == 1  # every call fits: depth 1 already hides them


def test_wasted_chained_calls_shallow_the_chain():
    knobs, why = decide(Knobs(depth=3), seen(accept_rate=0.9, wasted_share=0.2))
    assert knobs.depth == 2 and "20% of wall-clock wasted" in why[0]


def test_poor_accept_rate_shallows_and_loosens_tau_when_misses_are_cheap():
    knobs, why = decide(Knobs(tau=0.05, depth=3), seen(accept_rate=0.1, wasted_share=0.02))
    assert knobs.depth == 2 and knobs.tau == pytest.approx(0.075) and len(why) == 2


def test_costly_misses_tighten_tau():
    knobs, _ = decide(Knobs(tau=0.09), seen(accept_rate=0.9, wasted_share=0.3))
    assert knobs.tau == pytest.approx(0.06)


def test_decisions_slower_than_the_first_ones_carry_fewer_rounds():
    """The yardstick is the study's own first decisions: 1.3x their median shrinks the log,
    even when training hides the LLM; near them and flat, the log may grow."""
    assert decide(Knobs(context=24), seen(llm_s=2.0, llm_base=1.4))[0].context == 18
    assert decide(Knobs(context=24), seen(llm_s=1.5, llm_base=1.4, llm_trend=0.0)
                  )[0].context == 30
    assert decide(Knobs(context=24), seen(llm_s=1.7, llm_base=1.4, llm_trend=0.0)
                  )[0].context == 24  # between: keep


def test_growing_exposed_latency_carries_fewer_rounds():
    assert decide(Knobs(context=24), seen(llm_trend=0.3, llm_s=6.0))[0].context == 18
    # Hidden behind training, a longer prompt costs nothing: keep the rows.
    assert decide(Knobs(context=24), seen(llm_trend=0.3, llm_s=2.0))[0].context == 24
    assert decide(Knobs(context=24), seen(llm_trend=0.0, llm_base=1.0))[0].context == 30
    # Flat but no yardstick yet (the first decisions): short logs say nothing of longer ones.
    assert decide(Knobs(context=24), seen(llm_trend=0.0))[0].context == 24
    # Under a plan the calls read the plan's rows: growth is not the context's doing.
    assert decide(Knobs(context=24, plan=4), seen(llm_trend=0.3, llm_s=6.0))[0].context == 24


def test_an_llm_slower_than_training_makes_one_decision_cover_more_rounds():
    # As many rounds as trials land during one decision: 3 s / 1 s -> 3 (at least double).
    knobs, why = decide(Knobs(plan=1), seen(llm_s=3.0, llm_p90=4.0, train_s=1.0))
    assert knobs.plan == 3 and "plan 1->3" in why[-1]
    assert decide(Knobs(plan=1), seen(llm_s=1.2, llm_p90=4.0, train_s=1.0))[0].plan == 2
    knobs, why = decide(Knobs(plan=1), seen(llm_s=3.0, llm_p90=4.0, train_s=0.01))
    assert knobs.plan == Bounds().plan_max and "plan 1->16" in why[-1]  # at once, not 2, 4, ...
    for _ in range(5):
        knobs, _ = decide(knobs, seen(llm_s=3.0, llm_p90=4.0, train_s=0.01))
    assert knobs.plan == Bounds().plan_max
    # Training outlasts even the slow calls again: a decision fits inside a trial, halve.
    knobs, why = decide(knobs, seen(llm_s=1.0, llm_p90=2.0, train_s=30.0))
    assert knobs.plan == Bounds().plan_max // 2 and "outlasts" in why[-1]
    # In between (the LLM faster at the median, slower at p90): leave it.
    assert decide(Knobs(plan=4), seen(llm_s=2.0, llm_p90=6.0, train_s=3.0))[0].plan == 4
    assert decide(Knobs(plan=3), seen(llm_s=9.0), Bounds(plan_max=3))[0].plan == 3


def test_an_llm_that_keeps_agreeing_with_the_prior_is_asked_less_often():
    """Every 3 answers in a row that take the prior's pick double the plan (up to the cap),
    even when the LLM is faster than training; a departure that paid resets it to 1."""
    fast = {"llm_s": 1.0, "llm_p90": 2.0, "train_s": 30.0}  # the halving rule's own reading
    assert decide(Knobs(plan=1), seen(**fast, agreed=2))[0].plan == 1
    knobs, why = decide(Knobs(plan=1), seen(**fast, agreed=3))
    assert knobs.plan == 2 and "prior's pick 3 times in a row" in why[-1]
    assert decide(Knobs(plan=2), seen(**fast, agreed=9))[0].plan == 8
    assert decide(Knobs(plan=2), seen(**fast, agreed=90))[0].plan == Bounds().plan_max
    assert decide(Knobs(plan=8), seen(**fast, agreed=9))[0].plan == 8  # not halved below it
    knobs, why = decide(Knobs(plan=8), seen(**fast, agreed=0, departure_paid=True))
    assert knobs.plan == 1 and "departure" in why[-1]
    # A departure that did not pay stops the growth but keeps the plan (streak back at 0).
    assert decide(Knobs(plan=4), seen(llm_s=2.0, llm_p90=6.0, train_s=3.0, agreed=0))[0].plan == 4


def test_a_cold_cache_is_no_reason_to_compact():
    assert decide(Knobs(context=24), seen(cached_share=0.4, llm_trend=0.05))[0].context == 24


def test_knobs_stay_inside_their_bounds():
    b = Bounds(depth_max=2, tau_max=0.06, context_min=6, context_max=24)
    knobs = Knobs(tau=0.05, depth=2, context=7)
    for _ in range(10):
        knobs, _ = decide(knobs, seen(llm_s=6.0, llm_p90=9.0, accept_rate=0.9, llm_trend=1.0), b)
    assert knobs.depth == 2 and knobs.context == 6
    for _ in range(10):
        knobs, _ = decide(knobs, seen(accept_rate=0.0, wasted_share=0.0, llm_trend=0.0,
                                      llm_base=1.0), b)
    assert knobs.tau == 0.06 and knobs.depth == 1 and knobs.context == 24


def test_no_speculation_yet_leaves_tau_and_depth_alone():
    knobs, why = decide(Knobs(), seen(accept_rate=None, llm_s=50.0))
    assert (knobs.tau, knobs.depth) == (Knobs().tau, Knobs().depth)


def test_same_logs_same_decision():
    assert decide(Knobs(), seen(llm_trend=0.2)) == decide(Knobs(), seen(llm_trend=0.2))


def test_observe_and_selftune_read_and_write_the_ledger(ledger, toy_space):
    study = ledger.create_study("st", toy_space, metric="loss", direction="minimize")
    t = 0.0
    for i in range(6):  # LLM latency grows 0.5 s per call; training 2 s
        study.log_timing("llm_call", t, t + 1.0 + 0.5 * i, prompt_tokens=1000 + 300 * i,
                         cached_tokens=900 + 300 * i)
        t += 1.0 + 0.5 * i
        study.log_timing("train", t, t + 2.0)
        t += 2.0
    assert observe(study, window=2) is None  # fewer than 3 calls: too few to judge
    got = observe(study)
    assert got.llm_trend == pytest.approx(0.5) and got.train_s == pytest.approx(2.0)
    assert got.accept_rate is None and got.cached_share == pytest.approx(
        sum(900 + 300 * i for i in range(6)) / sum(1000 + 300 * i for i in range(6)))
    knobs = selftune(study, Knobs(context=24))
    assert knobs.context == 18 and knobs.plan == 2  # slower than training: plan two rounds
    event = study.events("selftune")[0]["detail"]
    assert event["before"]["context"] == 24 and event["after"]["context"] == 18
    assert event["observed"]["llm_trend"] == pytest.approx(0.5)
    assert "plan 1->2" in event["why"][0] and "grows" in event["why"][1]
    assert len(study.timings("selftune")) == 1


def test_with_two_workers_a_decision_must_fit_in_half_a_trial(ledger, toy_space):
    """Per-worker timings: two workers training 2 s each free one every second, so a 1.5 s
    decision is exposed (plan more rounds) where with one worker it fits."""
    from asap.agent.selftune import free_every
    study = ledger.create_study("w2", toy_space, metric="loss", direction="minimize")
    for i in range(6):
        study.log_timing("llm_call", i, i + 1.5, prompt_tokens=1000, cached_tokens=900)
        study.log_timing("train", i, i + 2.0, worker=i % 2)
    assert observe(study).train_s == pytest.approx(1.0)
    assert selftune(study, Knobs()).plan == 2
    assert free_every([{"duration": 2.0, "detail": {}}] * 3) == pytest.approx(2.0)
    assert free_every([{"duration": 2.0, "detail": {"worker": 0}},
                       {"duration": 6.0, "detail": {"worker": 1}}]) == pytest.approx(1.5)


def test_speculation_stops_when_trials_are_too_short_to_pay_and_resumes_when_they_are_not():
    """A speculative call pays only while training T outlasts (1 - accept) x the decision L:
    the australian case (T 0.28 s, L 1.24 s, 40 % accepted) stops speculating."""
    short = seen(train_s=0.28, llm_s=1.24, accept_rate=0.4)
    knobs, why = decide(Knobs(depth=1, tau=0.05), short)
    assert knobs.depth == 0 and "speculation cannot pay" in why[0]
    again = decide(knobs, short)[0]  # (the plan doubles: the LLM is slower than training)
    assert (again.depth, again.tau) == (0, 0.05)  # tau is not moved on old accept rates
    knobs, why = decide(knobs, seen(train_s=1.0, llm_s=1.24, accept_rate=0.4))
    assert knobs.depth == 1 and "depth 0->1" in why[0]
    pinned = Bounds(depth_min=1, depth_max=1)  # --depth 1: the user's depth stays
    assert decide(Knobs(depth=1), short, pinned)[0].depth == 1
    assert decide(Knobs(depth=2), seen(accept_rate=0.1, wasted_share=0.02))[0].depth == 1
