"""Decisions asked ahead (plan > 1): the next plan's decision is asked while the plan's rounds
train, and training never waits for it. Scripted chat model, real table training and tools."""

from __future__ import annotations

import json
import threading

import httpx
import openai
from fakes import ScriptedModel, australian, run_graph
from langchain_core.messages import AIMessage

from asap.agent.selftune import Bounds


def decide(choice: str) -> AIMessage:
    return AIMessage(json.dumps({"action": "train", "choice": choice}))


def by(study) -> list[str]:
    return [e["detail"]["by"] for e in study.events("decision")]


def ahead_events(study) -> list[dict]:
    return [e["detail"] for e in study.events("ahead")]


def session(tmp_path, model, trials: int, plan: int, **settings):
    study, ctx = australian(tmp_path, model, trials=trials, speculation="threshold",
                            bounds=Bounds(plan_min=plan, plan_max=plan), **settings)
    return study, ctx


def test_training_goes_on_while_the_next_decision_is_asked(tmp_path):
    """The decision asked at round 3 answers only once trial 5 has finished: if any round
    waited for it, that could never happen (the call gives up after 60 s and the test fails).
    Round 1 has nothing to decide from: it trains the prior's pick while the LLM reads the
    prompt, and its answer decides round 2."""
    five_done, waited = threading.Event(), []

    def script(messages, kwargs):
        if len(model.calls) == 2:  # the first decision asked under the plan
            waited.append(five_done.wait(60))
            return decide("B")
        return decide("A")

    def landed(trial, tool):
        if trial.number >= 4:
            five_done.set()

    model = ScriptedModel(script)
    study, ctx = session(tmp_path, model, trials=12, plan=3, on_trial=landed)
    run_graph(ctx, plan=3)
    assert waited == [True]
    assert len(study.trials(status="complete")) == 12
    start, late = ahead_events(study)[:2]
    assert (start["asked"], start["round"]) == (1, 2)
    assert late["asked"] == 3 and late["round"] >= 6 and late["verdict"] == "train"
    decisions = [e["detail"] for e in study.events("decision")]
    applied = late["round"] - 1  # rounds count from 1
    assert [d["by"] for d in decisions[:applied]] == ["plan", "llm"] + ["plan"] * (applied - 2)
    assert decisions[applied]["by"] == "llm"
    # "B" asked at round 3 means B's tool; it holds for the plan's rounds from where it landed.
    b_tool = decisions[2]["offers"][1][0]
    assert {d["trained"][0] for d in decisions[applied:applied + 3]} == {b_tool}
    calls = study.timings("llm_call")
    assert [c["detail"].get("ahead") for c in calls[:2]] == [True, True]  # none on the path


def test_idle_rounds_warm_the_rows_the_next_decision_reads(tmp_path):
    """Answers come at once and each trial's landing waits for the background call to end, so
    the schedule is fixed: round 1 asks (its trial trains the prior's pick), 2 takes (plan 4),
    3 asks, 4-5 warm, 6 takes, 7 asks... and no plan asks when no round after it would take
    the answer."""
    model = ScriptedModel(lambda m, k: decide("A"))
    study, ctx = session(tmp_path, model, trials=14, plan=4, on_trial=lambda t, _: _idle(ctx))
    run_graph(ctx, plan=4)
    assert by(study) == ["plan"] + ["llm", "plan", "plan", "plan"] * 3 + ["llm"]
    assert [(e["asked"], e["round"]) for e in ahead_events(study)] == [
        (1, 2), (3, 6), (7, 10), (11, 14)]
    prompts = [m[0][0].content for m in model.calls]  # asked at rounds 1, 3, 7, 11
    warm = [m[0][0].content for m in model.warmups]  # rounds 4, 5, 8, 9, 12, 13
    assert len(prompts) == 4 and len(warm) == 6
    # Each warm-up holds one more row than the last, and the next decision starts with it.
    assert prompts[2].startswith(warm[1]) and warm[1].startswith(warm[0])
    assert prompts[3].startswith(warm[3]) and warm[3].startswith(warm[2])
    assert warm[1].count("\nRound ") == warm[0].count("\nRound ") + 1


def test_a_failed_call_ahead_leaves_the_round_to_a_call_of_its_own(tmp_path):
    # Built as openai's own tests build it: with an httpx request (openai 3.x reads its headers).
    request = openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))

    def script(messages, kwargs):
        if len(model.calls) == 2:
            raise request
        return decide("A")

    model = ScriptedModel(script)
    study, ctx = session(tmp_path, model, trials=6, plan=3,
                         on_trial=lambda t, _: _idle(ctx))
    run_graph(ctx, plan=3)
    failed = ahead_events(study)[1]
    assert failed["asked"] == 3 and "APIConnectionError" in failed["error"]
    assert by(study)[:5] == ["plan", "llm", "plan", "plan", "llm"]  # 5 asked the LLM itself
    assert not study.timings("llm_call")[2]["detail"].get("ahead")
    assert len(study.trials(status="complete")) == 6


def test_a_stop_asked_ahead_ends_the_session(tmp_path):
    model = ScriptedModel(lambda m, k: decide("A") if len(model.calls) == 1
                          else AIMessage(json.dumps({"action": "stop"})))
    study, ctx = session(tmp_path, model, trials=10, plan=3, on_trial=lambda t, _: _idle(ctx))
    run_graph(ctx, plan=3)
    assert len(study.trials()) == 4  # rounds 1-4; the stop asked at round 3 ends it at round 5
    assert study.events("stop") and not ctx.ahead.busy()


def _idle(ctx) -> None:
    """Wait for the background call to end (the landing of each trial waits: a fixed order)."""
    pause = threading.Event()
    while ctx.ahead.busy():
        pause.wait(0.01)


def test_a_decision_asked_during_a_warm_up_runs_right_after_it():
    """A warm-up in flight does not turn a decision away (the plan's rounds may all pass before
    it ends): the decision is queued behind it, one call at a time, and taken when back."""
    from asap.graphs.ahead import Ahead, Asked
    ahead, order = Ahead(), []
    warming, release = threading.Event(), threading.Event()

    def warm_up():
        warming.set()
        release.wait(60)
        order.append("warm-up")

    def decision(cancel):
        order.append("decision")
        return decide("A")
    assert ahead.warm(warm_up) and warming.wait(60)
    assert ahead.ask(Asked(3, [], "## Round 3"), decision)  # queued, not refused
    assert not ahead.warm(warm_up) and not ahead.ask(Asked(4, [], ""), decision)
    assert ahead.take() is None and order == []  # the decision waits for the warm-up
    release.set()
    ahead.close()  # waits for both
    assert order == ["warm-up", "decision"]
    taken = ahead.take()
    assert taken.round == 3 and json.loads(taken.answer.content)["choice"] == "A"
