"""The JSON decision protocol: parsing offline, and for real on the embedded llama.cpp server."""

import pytest
from langchain_core.messages import HumanMessage

from asap.agent.llm import (
    DecisionError,
    chat_model,
    decision_schema,
    json_model,
    parse_decision,
    timed_invoke,
)
from asap.agent.prompt import PromptBuilder
from asap.agent.server import EmbeddedServer


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ('{"action": "fly", "choice": "A"}', "does not match"),
    ('{"action": "train", "choice": "Z"}', "unknown proposal 'Z'"),
    ('{"action": "own", "choice": "A"}', "needs 'params'"),
])
def test_bad_answers_are_named(text, message):
    with pytest.raises(DecisionError, match=message):
        parse_decision(text, ["A", "B"])


def test_schema_is_closed_and_typed(toy_space):
    train, own, stop = decision_schema(["A", "B"], toy_space)["anyOf"]
    assert all(s["additionalProperties"] is False for s in (train, own, stop))
    assert train["properties"]["choice"] == {"enum": ["A", "B"]}
    params = own["properties"]["params"]
    assert params["additionalProperties"] is False
    assert params["properties"]["lr"] == {"type": "number", "minimum": 1e-4, "maximum": 1.0}
    assert params["properties"]["optimizer"] == {"enum": ["sgd", "adam"]}
    assert stop["required"] == ["action"]


def test_good_answers():
    assert parse_decision('{"action": "train", "choice": "B"}', ["A", "B"]).choice == "B"
    own = parse_decision('{"action": "own", "choice": "A", "params": {"x": 1}}', ["A"])
    assert own.params == {"x": 1}


@pytest.mark.e2e
def test_smollm2_decides_through_the_schema_and_reuses_the_prefix(ledger, toy_space):
    study = ledger.create_study("llm", toy_space, metric="loss", direction="minimize", workload="toy")
    builder = PromptBuilder(study, tools_text="- optuna_suggest\n- nevergrad_suggest")
    with EmbeddedServer(say=lambda m: None) as srv:
        llm = json_model(chat_model(srv.base_url, "default"), decision_schema(["A", "B"], toy_space))
        for r in range(1, 4):
            cfg = {"x": 1.0 / r, "lr": 0.01, "n_layers": 1, "optimizer": "adam"}
            proposals = [("optuna:tpe", cfg), ("nevergrad:NGOpt", {**cfg, "x": -cfg["x"]})]
            current = builder.round_text(r, proposals)
            answer = timed_invoke(llm, [HumanMessage(builder.prompt(current))], study=study,
                                  protocol="json", trial_number=r)
            decision = parse_decision(answer.content, ["A", "B"])
            tid = study.start_trial(cfg, tool="optuna:tpe")
            trial = study.finish_trial(tid, status="complete", metrics={"loss": cfg["x"]})
            builder.close_round(current, builder.outcome_text(decision.choice or "stop", trial))
    calls = study.timings("llm_call")
    assert len(calls) == 3 and all(c["prompt_tokens"] > 200 for c in calls)
    # The stable prefix is reused: almost all of the previous call's prompt comes from the KV cache
    # (what is new each round is the round just closed and the next round's block).
    for before, after in zip(calls, calls[1:], strict=False):
        assert after["cached_tokens"] >= 0.95 * before["prompt_tokens"]
