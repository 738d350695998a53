"""The JSON decision protocol, offline (the real server: tests/e2e/test_embedded_llm.py)."""

import pytest

from asap.agent.llm.decision import (
    DecisionError,
    decision_schema,
    is_own,
    label_grammar,
    own_schema,
    parse_decision,
)


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ('{"action": "fly", "choice": "A"}', "does not match"),
    ('{"action": "train", "choice": "Z"}', "unknown proposal 'Z'"),
    ('{"action": "own", "choice": "A"}', "needs 'params'"),
    ('"Z"', "unknown proposal 'Z'"),
    ('"own"', "needs 'params'"),  # the configuration step answers it, never the guard
    ("7", "does not match"),
])
def test_bad_answers_are_named(text, message):
    with pytest.raises(DecisionError, match=message):
        parse_decision(text, ["A", "B"])


def test_schema_is_one_string_and_the_own_step_is_closed_and_typed(toy_space):
    assert decision_schema(["A", "B"]) == {"enum": ["A", "B", "own", "stop"]}
    assert label_grammar(["A", "B"]) == r'root ::= "\"A\"" | "\"B\"" | "\"own\"" | "\"stop\""'
    params = own_schema(toy_space)
    assert params["additionalProperties"] is False
    assert params["properties"]["lr"] == {"type": "number", "minimum": 1e-4, "maximum": 1.0}
    assert params["properties"]["optimizer"] == {"enum": ["sgd", "adam"]}
    assert is_own('"own"') and not is_own('"A"') and not is_own("{not json")


def test_good_answers():
    assert parse_decision('"B"', ["A", "B"]).choice == "B"
    assert parse_decision(' "stop"\n', ["A"]).action == "stop"
    assert parse_decision('{"action": "train", "choice": "B"}', ["A", "B"]).choice == "B"
    own = parse_decision('{"action": "own", "choice": "A", "params": {"x": 1}}', ["A"])
    assert own.params == {"x": 1}


def test_every_registered_protocol_has_its_templates_and_a_bad_one_fails_at_registration():
    from asap.agent.config import TuneConfig
    from asap.agent.llm.protocols import PROTOCOLS, register
    from asap.agent.llm.protocols.json_label import JsonLabelProtocol

    helps = TuneConfig.model_json_schema()["properties"]["decide"]["description"]
    for name, protocol in PROTOCOLS.items():  # what a session renders, each registered one
        assert protocol.name == name and protocol.answer_text().strip()
        assert protocol.reminder(protocol.__new__(protocol)).content.strip()
        assert f"{name} ({protocol.summary})" in helps  # --decide's help, from the registry

    class Always(JsonLabelProtocol):
        name = "always_a"

    with pytest.raises(ValueError, match=r"'always_a' needs the prompt template\(s\) "
                                         r"\['answer_always_a.txt', 'reminder_always_a.txt'\]"):
        register(Always)
    assert "always_a" not in PROTOCOLS
    Always.name = "auto"
    with pytest.raises(ValueError, match="an identifier other than 'auto'"):
        register(Always)
