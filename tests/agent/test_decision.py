"""The JSON decision protocol, offline (the real server: tests/e2e/test_embedded_llm.py)."""

import pytest

from asap.agent.decision import DecisionError, decision_schema, parse_decision


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
