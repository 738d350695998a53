"""The four HPO tools as LangChain tools: typed arguments, text plus structured artifact."""

import json

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from asap.tools.hpo.portfolio import Portfolio
from asap.tools.hpo_tools import Toolbox
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve


@pytest.fixture
def toolbox(ledger):
    wl = resolve("hpobench:australian")
    study = ledger.create_study("t", wl.space, metric=wl.metric, direction=wl.direction)
    return Toolbox(study, Portfolio(study), Trainer(study, wl))


def _call(tool, args):
    msg = tool.invoke({"type": "tool_call", "id": "c1", "name": tool.name, "args": args})
    assert isinstance(msg, ToolMessage)
    return msg.content, msg.artifact


def test_tools_propose_train_and_learn(toolbox):
    tools = {t.name: t for t in toolbox.tools()}
    assert set(tools) == {"optuna_suggest", "nevergrad_suggest", "llm_propose", "train_on_gpu"}
    text, art = _call(tools["optuna_suggest"], {"sampler": "tpe", "n": 2})
    assert json.loads(text) == art and art["tool"] == "optuna:tpe" and len(art["configs"]) == 2
    text, trained = _call(tools["train_on_gpu"], {"params": art["configs"][0], "tool": "optuna:tpe"})
    assert json.loads(text) == trained and trained["status"] == "complete"
    assert trained["metric"] == "val_acc" and 0 < trained["value"] <= 1
    _, ng = _call(tools["nevergrad_suggest"], {"optimizer": "NGOpt", "n": 1})
    assert toolbox.study.space.validate(ng["configs"][0])
    assert toolbox.portfolio.optimizer("nevergrad", "NGOpt").n_told == 1
    assert [t.tool for t in toolbox.study.trials()] == ["optuna:tpe"]


def test_invalid_llm_config_is_a_structured_error(toolbox):
    tools = {t.name: t for t in toolbox.tools()}
    bad = {"alpha": 5.0, "batch_size": 4, "depth": 1, "learning_rate_init": 1e-5, "width": 16}
    text, art = _call(tools["llm_propose"], {"params": bad})
    assert json.loads(text) == art and art["error"].startswith("invalid configuration")
    assert "outside" in art["error"]
    text, art = _call(tools["train_on_gpu"], {"params": bad})
    assert "outside" in art["error"]
    assert toolbox.study.trials() == []  # nothing invalid reaches the ledger


def test_arguments_are_typed(toolbox):
    tools = {t.name: t for t in toolbox.tools()}
    with pytest.raises(ValidationError):
        tools["optuna_suggest"].invoke({"sampler": "bogus"})
    with pytest.raises(ValidationError):
        tools["nevergrad_suggest"].invoke({"optimizer": "CMA", "n": 99})
    schema = tools["optuna_suggest"].tool_call_schema.model_json_schema()
    assert sorted(schema["properties"]["sampler"]["enum"]) == ["cmaes", "gp", "qmc", "random",
                                                               "tpe"]


class _Recorder(GenericFakeChatModel):
    """A chat model that keeps the tool definitions it is bound to, as OpenAI's API gets them."""

    given: list = []

    def bind_tools(self, tools, **kwargs):
        self.given[:] = [convert_to_openai_tool(t) for t in tools]
        return self


def test_a_bound_model_is_given_the_space_in_every_tool(ledger, toy_space):
    wl = resolve("hpobench:australian")
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    model = _Recorder(messages=iter(()))
    model.bind_tools(Toolbox(study, Portfolio(study), Trainer(study, wl)).tools())
    given = {t["function"]["name"]: t["function"] for t in model.given}
    for fn in given.values():  # every description names each parameter and its range
        assert "lr: float in [0.0001, 1] log" in fn["description"]
        assert "momentum" in fn["description"] and "only when optimizer in" in fn["description"]
    params = given["train_on_gpu"]["parameters"]["properties"]["params"]
    assert "$ref" not in json.dumps(params)  # inline: every server's parser reads it
    props = params["properties"]
    assert props["x"]["minimum"] == -5.0 and props["x"]["maximum"] == 5.0
    assert props["optimizer"]["enum"] == ["sgd", "adam"]
    assert props["n_layers"]["type"] == "integer"
    assert "only when" in props["momentum"]["description"]
    assert set(params["required"]) == {"x", "lr", "n_layers", "optimizer"}  # not conditional
    assert given["llm_propose"]["parameters"]["properties"]["params"] == params


def test_arguments_of_the_wrong_kind_are_a_structured_error(toolbox):
    tools = {t.name: t for t in toolbox.tools()}
    text, art = _call(tools["train_on_gpu"], {"params": {"alpha": 1e-4}, "fidelity": "many"})
    assert art == json.loads(text) and art["error"].startswith("invalid argument 'fidelity'")
    text, art = _call(tools["llm_propose"], {"params": "not a dict"})
    assert art["error"].startswith("invalid argument 'params'")
    assert toolbox.study.trials() == []
