"""Questions told from requests, without a model: the sentences that were turned into actions,
verbatim, and other phrasings."""

from __future__ import annotations

import pytest

from asap.agent.chat.questions import is_question, kind, target_named, tool_named


@pytest.mark.parametrize("text, expected", [
    ("why TPE?", "why"),
    ("how much time went to the LLM?", "time"),
    ("is width or lr more important here?", "importance"),
    ("what should I try next to get above 0.97?", "next"),
    ("which parameter matters most", "importance"),
    ("where did the time go", "time"),
    ("explain why cmaes was picked", "why"),
    ("tell me the best configuration", "best"),
    ("what were the top 3?", "top"),
    ("what do you suggest?", "next"),
    ("help", "help"),
    ("does the learning rate have an effect of note?", "importance"),
    ("how good is it?", "other"),
    ("so what did you actually do there, in plain words", "summary"),
    ("ok, why tpe", "why"),
    ("which of the knobs made the biggest difference to accuracy?", "importance"),
])
def test_questions_are_questions_and_say_which(text, expected):
    assert is_question(text) and kind(text) == expected


@pytest.mark.parametrize("text", [
    "2 more trials", "make it better", "try adam", "narrow the width to 32..64", "stop",
    "tune digits-mlp for accuracy", "can you run 5 more trials?", "could you please try adam?",
    "yes", "no", "ok do 5 more trials", "so tune digits-mlp",
])
def test_requests_are_not_questions(text):
    assert not is_question(text)  # they go on to the action rules, and need a yes


def test_what_a_question_names():
    assert tool_named("why TPE?") == "tpe" and tool_named("why CMA-ES?") == "cmaes"
    assert target_named("what should I try next to get above 0.97?") == 0.97
    assert target_named("why tpe?") is None
