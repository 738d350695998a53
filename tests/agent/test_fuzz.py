"""Fuzzed LLM output through the guard: 10,000 generated tool calls and JSON answers.

No exception may escape the guard, and whatever it lets through to training must validate in the
search space (a conditional one, with values on and over its edges).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from asap.agent.llm.protocols import make_protocol
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.hpo.space import Space
from asap.tools.hpo_tools import Toolbox
from asap.tools.ledger.store import Ledger
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve

SPACE = Space.from_dict({
    "x": {"type": "float", "low": -5.0, "high": 5.0},
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 4},
    "units_l3": {"type": "int", "low": 8, "high": 64, "step": 8,
                 "when": {"parent": "n_layers", "ge": 3}},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"parent": "optimizer",
                                                                     "in": ["sgd"]}},
})
OFFERS = [("optuna:tpe", {"x": 1.0, "lr": 0.01, "n_layers": 2, "optimizer": "adam"}),
          ("nevergrad:NGOpt", {"x": -2.0, "lr": 0.1, "n_layers": 3, "units_l3": 16,
                               "optimizer": "sgd", "momentum": 0.9})]

edge = st.sampled_from([-5.0, 5.0, -5.000001, 5.000001, 1e-4, 1.0, 0.99, 0.991, 0.0, -0.0, 8, 64,
                        63, 72, 1, 4, 0, 5, 3, 1e308, -1e308, 10**30, math.nan, math.inf,
                        -math.inf])
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=3), edge,
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
value = st.one_of(edge, junk, st.sampled_from(["sgd", "adam", "SGD", ""]))
keys = st.sampled_from([*SPACE.names, "params", "tool", "extra", ""])
config = st.one_of(
    st.dictionaries(keys, value, max_size=7),
    st.fixed_dictionaries({"x": edge, "lr": edge, "n_layers": edge, "optimizer":
                           st.sampled_from(["sgd", "adam", "rmsprop"])},
                          optional={"units_l3": edge, "momentum": edge, "junk": junk}),
    junk)
tool_name = st.sampled_from(["train_on_gpu", "stop", "optuna_suggest", "nevergrad_suggest",
                             "llm_propose", "rm_rf", "", "TRAIN_ON_GPU"])
args = st.one_of(
    st.fixed_dictionaries({"params": config}, optional={"tool": junk, "fidelity": junk}),
    st.fixed_dictionaries({"sampler": st.sampled_from(["tpe", "random", "nope", 3]),
                           "n": st.one_of(st.integers(-3, 12), junk)}),
    st.fixed_dictionaries({"optimizer": st.sampled_from(["NGOpt", "DE", "x"]), "n": junk}),
    st.dictionaries(st.text(max_size=6), junk, max_size=4))
calls = st.lists(st.tuples(tool_name, args, st.text(max_size=4)), max_size=3)
invalid = st.lists(st.fixed_dictionaries({"name": tool_name, "args": st.text(max_size=30),
                                          "id": st.text(max_size=4), "error": st.text(max_size=8)}),
                   max_size=2)


def _toolbox(tmp_path_factory):
    wl = resolve("hpobench:australian")
    study = Ledger(tmp_path_factory.mktemp("fuzz") / "f.db").create_study(
        "fuzz", SPACE, metric="loss", direction="minimize")
    box = Toolbox(study, Portfolio(study), Trainer(study, wl)).tools()
    return make_protocol("tools", GenericFakeChatModel(messages=iter(())), study, box)


def _passes(verdict) -> None:
    assert verdict.kind in ("train", "stop", "retry", "remind", "explore")
    if verdict.kind == "train":
        tool, cfg = verdict.choice
        assert SPACE.validate(cfg) == cfg  # only valid configurations ever reach the trainer


# A few hundred examples on every run; the full 5,000 each (10,000 in all) with ``-m fuzz``.
EXAMPLES = [300, pytest.param(5000, marks=pytest.mark.fuzz)]


@pytest.mark.parametrize("examples", EXAMPLES)
def test_fuzzed_tool_calls_never_escape_the_guard(tmp_path_factory, examples):
    protocol = _toolbox(tmp_path_factory)

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(calls=calls, bad=invalid, content=st.text(max_size=20))
    def one(calls, bad, content):
        message = AIMessage(content=content, tool_calls=[
            {"name": n, "args": a if isinstance(a, dict) else {"value": a}, "id": i}
            for n, a, i in calls], invalid_tool_calls=[{**b, "type": "invalid_tool_call"}
                                                        for b in bad])
        _passes(protocol.check(message, OFFERS, SPACE))
    one()


@pytest.mark.parametrize("examples", EXAMPLES)
def test_fuzzed_json_answers_never_escape_the_guard(tmp_path, examples):
    study = Ledger(tmp_path / "j.db").create_study("j", SPACE, metric="loss",
                                                   direction="minimize")
    protocol = make_protocol("json", GenericFakeChatModel(messages=iter(())), study)

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(answer=st.one_of(
        st.text(max_size=40),
        st.builds(lambda a, c, p: json.dumps({"action": a, "choice": c, "params": p},
                                             default=str),
                  st.sampled_from(["train", "own", "stop", "explode", None]),
                  st.one_of(st.sampled_from(["A", "B", "C", "a", ""]), junk), config),
        st.builds(lambda p: json.dumps({"action": "own", "params": p}, default=str), config)))
    def one(answer):
        _passes(protocol.check(AIMessage(content=answer), OFFERS, SPACE))
    one()
