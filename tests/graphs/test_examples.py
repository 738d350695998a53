"""The library API and the runnable examples, with a scripted chat model where an LLM is needed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from fakes import ScriptedModel, call, chat_script
from langchain_core.messages import AIMessage, ToolMessage

from asap.agent.config import ConfigError
from asap.graphs.api import TaskResult, run_task
from asap.tools import study_tools
from asap.tools.ledger.store import Ledger

EXAMPLES = Path(__file__).parents[2] / "examples"


def example(name: str) -> dict:
    """Import an example file as a module (registered, so its type hints resolve)."""
    return vars(load(EXAMPLES / f"{name}.py", f"example_{name}"))


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def json_decider(messages, kwargs):
    """A JSON-protocol model: text to the probe (so auto picks json), then always proposal A."""
    if "response_format" not in kwargs:
        return AIMessage(content="Ready.")
    return AIMessage(content='{"action": "train", "choice": "A"}')


def test_study_tools_are_base_tools_bound_to_a_study(tmp_path):
    tools = {t.name: t for t in study_tools("hpobench:australian", db=tmp_path / "t.db", study="s")}
    assert set(tools) == {"optuna_suggest", "nevergrad_suggest", "llm_propose", "train_on_gpu"}
    msg = tools["optuna_suggest"].invoke({"type": "tool_call", "id": "1", "name": "optuna_suggest",
                                          "args": {"sampler": "tpe"}})
    config = msg.artifact["configs"][0]
    done = json.loads(tools["train_on_gpu"].invoke({"params": config, "tool": "optuna:tpe"}))
    assert done["trial"] == 0 and done["status"] == "complete"
    assert Ledger(tmp_path / "t.db").open_study("s").trials()[0].config == config


def test_react_agent_example_tunes_with_the_tools(tmp_path):
    def script(messages, kwargs):
        last = messages[-1]
        if not isinstance(last, ToolMessage):
            return call("optuna_suggest", {"sampler": "tpe", "n": 1})
        if last.name == "optuna_suggest":
            config = json.loads(last.content)["configs"][0]
            return call("train_on_gpu", {"params": config, "tool": "optuna:tpe"}, 1)
        return AIMessage(content=f"Done: {last.content}")
    final = example("react_agent")["main"](ScriptedModel(script), db=str(tmp_path / "r.db"))
    assert '"status": "complete"' in final["messages"][-1].content
    trials = Ledger(tmp_path / "r.db").open_study("react").trials()
    assert [(t.tool, t.status) for t in trials] == [("optuna:tpe", "complete")]


def test_tuning_graph_as_a_node_of_another_app(tmp_path):
    app = example("subgraph")["build"](ScriptedModel(json_decider), db=str(tmp_path / "p.db"))
    out = app.invoke({})
    assert out["result"]["trials"] == 4 and out["result"]["best_tool"].startswith(
        ("optuna:", "nevergrad:"))
    assert out["verdict"].startswith("best val_acc 0.")


def test_eval_harness_example_scores_agents_with_typed_results(tmp_path):
    results = example("eval_harness")["score"](
        {"a": ScriptedModel(json_decider)}, db=str(tmp_path / "h.db"), trials=5)
    r = results["a"]
    assert isinstance(r, TaskResult) and r.trials == 5 and r.complete == 5
    # rounds 1-3 are the tools' start-up (llm_after): the model decides rounds 4 and 5
    assert 0 < r.best_value <= 1 and r.fallbacks == 0 and r.llm_calls >= 2
    assert r.llm_record["decisions"] == 2
    assert r.wall_clock_s > 0 and 0 <= r.llm_share <= 1


def test_run_task_names_a_bad_setting(tmp_path):
    with pytest.raises(ConfigError, match="trials"):
        run_task("hpobench:australian", trials=0, db=str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="nonsense"):
        run_task("hpobench:australian", nonsense=1, db=str(tmp_path / "x.db"))


def test_langgraph_json_names_loadable_graphs_by_module_path():
    """The graphs are module paths (they load wherever asap-hpo is installed), the repo's file
    is what ``asap init-langgraph`` writes, and every graph publishes its JSON schemas."""
    import importlib

    from asap.agent.config import TuneConfig
    from asap.graphs.app import langgraph_config
    from asap.graphs.policy import CLIENT_SETTINGS
    spec = json.loads((EXAMPLES.parent / "langgraph.json").read_text())
    assert spec == langgraph_config()
    nodes = {}
    for name, ref in spec["graphs"].items():
        module, _, attr = ref.partition(":")
        assert not module.endswith(".py") and "/" not in module
        graph = getattr(importlib.import_module(module), attr)
        nodes[name] = set(graph.get_graph().nodes)
        assert graph.get_input_jsonschema()["properties"]  # Studio's form, for every graph
        assert graph.get_output_jsonschema()["properties"]
    assert set(spec["graphs"]) == {"tune", "tuning", "chat"}
    assert "tune" in nodes["tune"] and "tune" in nodes["chat"]
    # The real tuning loop, node by node, as LangGraph's tooling draws it.
    assert {"propose", "agent", "guard", "dispatch", "selftune", "await_train", "speculate",
            "reconcile"} <= nodes["tuning"]
    app = importlib.import_module("asap.graphs.app")
    tune = app.graph  # what a server serves: only the settings a client may choose
    schema = tune.get_input_jsonschema()
    settings = schema["$defs"]["ClientSettings"]["properties"]
    assert set(settings) == CLIENT_SETTINGS and not {"base_url", "db", "model"} & set(settings)
    own = app.build_tune_graph().get_input_jsonschema()["$defs"]["TuneSettings"]["properties"]
    assert set(own) == set(TuneConfig.model_fields) - {"workload", "trials"}  # your own app's
    assert settings["width"]["default"] == 2 and settings["width"]["maximum"] == 8
    assert settings["pruner"]["enum"] == ["none", "median", "sha", "hyperband"]
    assert "description" in settings["cost_weight"]
    output = tune.get_output_jsonschema()
    assert "best_value" in output["$defs"]["TaskResult"]["properties"]


def test_the_tune_graph_streams_trials_and_decisions_as_custom_events(tmp_path, monkeypatch):
    from asap.graphs.app import graph
    monkeypatch.setenv("ASAP_DB", str(tmp_path / "s.db"))  # the operator's ledger
    events = list(graph.stream(
        {"workload": "hpobench:australian", "trials": 4, "settings": {"llm": False}},
        stream_mode="custom"))
    kinds = [e["event"] for e in events]
    assert kinds.count("trial_start") == kinds.count("trial") == kinds.count("decision") == 4
    first = events[kinds.index("decision")]
    assert first["round"] == 1 and first["by"] == "prior" and first["trained"][0]
    done = [e for e in events if e["event"] == "trial"]
    assert [e["trial"] for e in done] == [0, 1, 2, 3] and all(e["status"] == "complete"
                                                              for e in done)


def test_chat_graph_example_confirms_then_answers(tmp_path):
    model = ScriptedModel(chat_script)
    said = example("chat_graph")["converse"](model, db=str(tmp_path / "c.db"), tune_llm=model,
                                             turns=("tune hpobench:australian, 3 trials",
                                                    "what were the top 5?"))
    assert said[0].endswith("Proceed? (yes, or say what to change)")
    assert said[1].startswith("Done.") and said[2].startswith("Top 3 of 3 complete trials")
