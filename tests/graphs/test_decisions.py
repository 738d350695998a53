"""Decisions through the guard, in both protocols: valid answers train, bad ones go back naming
the problem and end in the fallback, nothing an answer says runs code; ``auto`` probes the model.

Training is real (the HPOBench table for australian), the tools are real Optuna / Nevergrad;
only the chat model is scripted.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fakes import ScriptedModel, call, rounds
from graphrun import GOOD, copy_a, events, run
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from asap.agent.llm.protocols import pick_protocol
from asap.agent.prior.fit import off_centre


def test_valid_tool_calls_train_the_copied_proposal(tmp_path):
    model = ScriptedModel(copy_a)
    study, state, _ = run(tmp_path, model)
    trials = study.trials()
    assert [t.status for t in trials] == ["complete"] * 3
    assert all(t.tool == "optuna:tpe" for t in trials)  # proposal A is TPE's, attributed to it
    assert state["retries"] == 0 and state["fallbacks"] == 0
    assert len(study.timings("llm_call")) == 3
    assert all(c["detail"]["protocol"] == "tools" for c in study.timings("llm_call"))
    assert model.calls[0][1]["tool_choice"] == "required"
    assert set(model.calls[0][1]["tools"]) == {"optuna_suggest", "nevergrad_suggest", "llm_propose",
                                               "train_on_gpu", "stop"}


def test_malformed_arguments_go_back_as_a_tool_message(tmp_path):
    def script(messages, kwargs):
        if isinstance(messages[-1], HumanMessage):  # first answer of each round is malformed
            return AIMessage(content="", invalid_tool_calls=[
                {"name": "train_on_gpu", "args": '{"params": {', "id": "bad", "error": "JSON"}])
        return call("train_on_gpu", {"params": GOOD}, 1)
    model = ScriptedModel(script)
    study, state, _ = run(tmp_path, model, trials=2)
    assert len(study.trials(status="complete")) == 2 and state["retries"] == 2
    retry_msgs = model.calls[1][0]
    assert isinstance(retry_msgs[-2], AIMessage)  # the answer, then one ToolMessage per call id
    tm = retry_msgs[-1]
    assert isinstance(tm, ToolMessage) and tm.status == "error" and tm.tool_call_id == "bad"
    assert "not valid JSON" in tm.content
    assert [e["reason"] for e in events(study, "guard_retry")][0].startswith("the arguments of")
    first, second = study.trials()
    assert first.tool == "llm" and first.config == GOOD
    assert second.config != GOOD and len(events(study, "repeat_avoided")) == 1  # never twice


def test_unknown_tool_is_named_and_retried(tmp_path):
    def script(messages, kwargs):
        if isinstance(messages[-1], HumanMessage):
            return call("sklearn_magic", {"x": 1})
        return copy_a(messages, kwargs)
    model = ScriptedModel(script)
    study, _, _ = run(tmp_path, model, trials=1)
    assert "unknown tool 'sklearn_magic'" in model.calls[1][0][-1].content
    assert len(events(study, "guard_retry")) == 1 and study.trials()[0].status == "complete"


def test_out_of_space_configs_never_train_and_end_in_the_fallback(tmp_path):
    bad = {**GOOD, "learning_rate_init": 5.0}
    model = ScriptedModel(lambda m, k: call("train_on_gpu", {"params": bad}))
    study, state, _ = run(tmp_path, model, trials=2, max_retries=2)
    # Per round: 3 answers (first + 2 retries), then the fallback decides.
    assert len(model.calls) == 6 and state["retries"] == 4 and state["fallbacks"] == 2
    assert "learning_rate_init" in model.calls[1][0][-1].content
    assert all(study.space.is_valid(t.config) for t in study.trials())
    # an unscored round's fallback trains its most central proposal (the start-up pick)
    first = next(d for d in events(study, "decision") if d["by"] == "fallback")
    assert first["trained"] == min(first["offers"], key=lambda o: off_centre(study.space, o[1]))
    assert all(t.config["learning_rate_init"] <= 1.0 for t in study.trials())


def test_plain_text_gets_one_reminder_then_the_fallback(tmp_path):
    model = ScriptedModel(lambda m, k: AIMessage(content="I think B looks good."))
    study, state, _ = run(tmp_path, model, trials=2)
    assert len(model.calls) == 4  # text, reminder, text, fallback - per round
    assert "Answer with a tool call" in model.calls[1][0][-1].content
    assert len(events(study, "guard_reminder")) == 2 and state["fallbacks"] == 2
    assert len(study.trials(status="complete")) == 2


def test_suggest_tools_explore_and_their_configs_are_attributed(tmp_path):
    def script(messages, kwargs):
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return call("train_on_gpu", {"params": last.artifact["configs"][0], "tool": "whatever"}, 2)
        return call("optuna_suggest", {"sampler": "random", "n": 2}, 1)
    model = ScriptedModel(script)
    study, _, _ = run(tmp_path, model, trials=2)
    assert [t.tool for t in study.trials()] == ["optuna:random"] * 2
    assert len(study.timings("tool_call")) >= 4  # panel asks and the explicit suggest calls


def test_bad_suggest_arguments_are_a_retry(tmp_path):
    def script(messages, kwargs):
        if isinstance(messages[-1], HumanMessage):
            return call("optuna_suggest", {"sampler": "magic"})
        return copy_a(messages, kwargs)
    model = ScriptedModel(script)
    study, _, _ = run(tmp_path, model, trials=1)
    assert "sampler" in model.calls[1][0][-1].content and len(events(study, "guard_retry")) == 1


def test_stop_ends_the_session(tmp_path):
    model = ScriptedModel(lambda m, k: call("stop", {"reason": "converged"}) if rounds(m) == 2
                          else copy_a(m, k))
    study, state, _ = run(tmp_path, model, trials=5)
    assert state["stop"] and len(study.trials()) == 1
    assert events(study, "stop")[0]["reason"] == "converged"


def test_refused_tool_choice_moves_on_without_breaking_the_session(tmp_path):
    model = ScriptedModel(copy_a, refuse=("required",))
    study, _, _ = run(tmp_path, model, trials=2)
    assert len(study.trials(status="complete")) == 2
    assert events(study, "tool_choice") == [
        {"refused": "required", "next": "auto", "status": 400,
         "reason": events(study, "tool_choice")[0]["reason"]}]
    assert [k.get("tool_choice") for _, k in model.calls] == ["required", "auto", "auto"]


def test_unreachable_llm_falls_back_every_round(tmp_path):
    def script(messages, kwargs):
        raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
    study, state, _ = run(tmp_path, ScriptedModel(script), trials=2)
    assert state["fallbacks"] == 2 and len(events(study, "llm_error")) == 2
    assert "APIConnectionError" in events(study, "llm_error")[0]["reason"]


def test_an_llm_answer_cannot_run_code_or_write_files(tmp_path, monkeypatch):
    """Answers are data: parsed by a schema, labels looked up, own configurations validated
    against the space; nothing in them is imported, evaluated or used as a path."""
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    answers = iter([
        json.dumps({"action": "own", "params": {**GOOD, "alpha": payload}}),
        json.dumps({"action": "own", "params": {**GOOD, "width": f"{marker}"}}),
        json.dumps({"action": "train", "choice": f"open('{marker}', 'w')"}),
    ] * 3)
    model = ScriptedModel(lambda m, k: AIMessage(content=next(answers, '{"action": "stop"}')))
    monkeypatch.chdir(tmp_path)
    study, state, _ = run(tmp_path, model, protocol="json", trials=2)
    assert not marker.exists() and not list(tmp_path.glob("*pwned*"))
    space = study.space
    for t in study.trials():
        assert space.validate(t.config) == t.config  # every trained config is a valid one
        assert payload not in json.dumps(t.config)
    assert state["fallbacks"] >= 1  # the answers were refused, the prior decided


def test_json_protocol_maps_onto_the_same_choices(tmp_path):
    answers = iter(['not json at all', '{"action": "train", "choice": "B"}',
                    '{"action": "own", "params": {"alpha": 7}}',
                    '{"action": "own", "params": ' + str(GOOD).replace("'", '"') + '}',
                    '{"action": "stop"}'])
    model = ScriptedModel(lambda m, k: AIMessage(content=next(answers)))
    study, state, _ = run(tmp_path, model, protocol="json", trials=5)
    assert "response_format" in model.calls[0][1]
    assert [t.tool for t in study.trials()] == ["optuna:cmaes", "llm"]  # B is CMA-ES's
    assert study.trials()[1].config == GOOD
    assert len(events(study, "guard_reminder")) == 1 and len(events(study, "guard_retry")) == 1
    assert "alpha" in events(study, "guard_retry")[0]["reason"] and state["stop"]


def test_compact_labels_and_the_two_step_own_decision(tmp_path):
    """A decision is one JSON string; "own" asks for the configuration in a second call, whose
    answer trains as the LLM's; on a llama.cpp server the label goes as an exact grammar."""
    def script(messages, kwargs):
        if messages[-1].content.startswith("Your configuration"):
            assert kwargs["response_format"]["json_schema"]["name"] == "params"
            return AIMessage(content=json.dumps(GOOD))
        return AIMessage(content='"own"' if len(messages) == 1 and "## Round 2 (" in
                         messages[0].content else '"B"')
    model = ScriptedModel(script)
    study, state, _ = run(tmp_path, model, protocol="json", trials=3, grammar=True)
    assert [t.tool for t in study.trials()][:2] == ["optuna:cmaes", "llm"]  # B, then its own
    assert study.trials()[1].config == GOOD and state["retries"] == 0
    decisions = [k for _, k in model.calls if "extra_body" in k]
    assert len(decisions) == 3 and decisions[0]["extra_body"]["grammar"].startswith(
        'root ::= "\\"A\\""')
    own = [c for c in study.timings("llm_call") if c["detail"].get("own")]
    assert len(own) == 1


@pytest.mark.parametrize("script, refuse, expected", [
    (lambda m, k: call("report_ready", {"ready": True}), (), "tools"),
    (lambda m, k: AIMessage(content="Sure! I am ready."), (), "json"),
    (lambda m, k: call("report_ready", {"ready": True}), ("required", "auto", None), "json"),
])
def test_auto_protocol_probes_the_model(ledger, toy_space, script, refuse, expected):
    study = ledger.create_study("p", toy_space, metric="loss", direction="minimize")
    assert pick_protocol(ScriptedModel(script, refuse), "auto", study) == expected
    assert study.events("protocol")[0]["detail"]["chosen"] == expected
    assert pick_protocol(ScriptedModel(script), "json") == "json"


def test_auto_asks_every_registered_protocol_in_order_of_preference(ledger, toy_space,
                                                                   monkeypatch):
    """A protocol registered later is considered by ``auto`` too: the first, by preference,
    whose probe says the model speaks it decides; one that says no is passed over, with its
    reason in the ``protocol`` event."""
    from asap.agent.llm.protocols import PROTOCOLS, JsonLabelProtocol

    class Shy(JsonLabelProtocol):
        name, preference = "shy", 9

        @classmethod
        def speaks(cls, llm):
            return False, "needs a feature this server lacks"

    class Eager(JsonLabelProtocol):
        name, preference = "eager", 5

        @classmethod
        def speaks(cls, llm):
            return True, "the model answers it"
    monkeypatch.setitem(PROTOCOLS, "shy", Shy)
    monkeypatch.setitem(PROTOCOLS, "eager", Eager)
    study = ledger.create_study("p", toy_space, metric="loss", direction="minimize")
    text = ScriptedModel(lambda m, k: AIMessage(content="Sure! I am ready."))
    assert pick_protocol(text, "auto", study) == "eager"  # before the tool-call probe (1)
    assert study.events("protocol")[0]["detail"]["reason"] == (
        "shy: needs a feature this server lacks; eager: the model answers it")
    monkeypatch.delitem(PROTOCOLS, "eager")
    assert pick_protocol(text, "auto", study) == "json"  # text back: no tool calls; the default
    assert study.events("protocol")[1]["detail"]["reason"].startswith(
        "shy: needs a feature this server lacks; tools: answered with text: ")


def test_an_own_config_that_already_ran_is_never_trained_twice(tmp_path):
    def own_good(messages, kwargs):
        return call("train_on_gpu", {"params": GOOD, "tool": "llm"})
    study, _, _ = run(tmp_path, ScriptedModel(own_good), trials=3)
    trials = study.trials()
    assert trials[0].config == GOOD and trials[0].tool == "llm"
    assert len({json.dumps(t.config) for t in trials}) == 3  # the repeats were replaced
    assert [e["trial"] for e in events(study, "repeat_avoided")] == [0, 0]
