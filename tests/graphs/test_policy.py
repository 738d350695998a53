"""A served graph's client is not its operator (asap.graphs.policy): each probe below is what a
client sent as the tune graph's input, first reproduced, then refused in one line before
anything was imported, opened, written or sent. In-process (``build_tune_graph()``, your own
app) every setting stays yours."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeOpenAI

from asap.graphs.app import build_tune_graph, graph
from asap.graphs.policy import PolicyError, ServerPolicy
from asap.tools.ledger.store import Ledger

USERWL = Path(__file__).parents[1] / "userwl"


@pytest.fixture
def operator(tmp_path, monkeypatch):
    """A server's environment: its key, its endpoint, its ledger; the client is the test."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-operators-key")
    monkeypatch.delenv("ASAP_BASE_URL", raising=False)
    monkeypatch.setenv("ASAP_DB", str(tmp_path / "served.db"))
    for var in ("ASAP_SPACES", "ASAP_WORKLOADS", "ASAP_MAX_TRIALS", "ASAP_MAX_WORKERS",
                "ASAP_MAX_TIME_S"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _task(workload="hpobench:australian", trials=3, **settings):
    return {"workload": workload, "trials": trials, "settings": settings}


def test_the_servers_key_never_goes_to_an_endpoint_a_client_names(operator):
    """Item 1: the key went to any base_url a client named, with every prompt."""
    listener = FakeOpenAI().start()
    try:
        with pytest.raises(PolicyError, match="'base_url': set by the server's operator"):
            graph.invoke(_task(base_url=listener.base_url, llm_after=0, clock="virtual"))
        for key in ("model", "api_key"):
            with pytest.raises(PolicyError, match=f"'{key}': set by the server's operator"):
                graph.invoke(_task(**{key: "x"}))
        assert listener.requests == []
    finally:
        listener.stop()


@pytest.mark.parametrize("workload", ["userscript:f", "this:x", "subprocess:run"])
def test_a_client_names_no_module_for_the_server_to_import(operator, workload):
    """Item 2: `userscript:f` imported a file from the server's folder and ran it."""
    (operator / "userscript.py").write_text(
        "from pathlib import Path\nPath('imported').touch()\ndef f(config, report):\n"
        "    return 1.0\n")
    with pytest.raises(PolicyError, match="is not served here"):
        graph.invoke(_task(workload, llm=False))
    assert not (operator / "imported").exists()


def test_the_operator_registers_the_user_workloads_clients_may_name(operator, monkeypatch):
    monkeypatch.setenv("ASAP_WORKLOADS", "simulated:constant")
    monkeypatch.setenv("ASAP_SPACES", str(USERWL))
    monkeypatch.syspath_prepend(str(USERWL))
    out = graph.invoke(_task("simulated:constant", 2, space="simulated", llm=False,
                             clock="virtual"))
    assert out["result"]["complete"] == 2
    assert Ledger(operator / "served.db").has_study("simulated-constant")


@pytest.mark.parametrize("space", ["/etc/shadow", "../secrets", "simulated.yaml"])
def test_a_client_names_a_space_file_only_by_name_in_the_operators_folder(operator, space,
                                                                         monkeypatch):
    """Item 3: `space: /etc/shadow` answered with the file's first line in the error."""
    (operator / "secrets.yaml").write_text("password: hunter2\n")
    monkeypatch.setenv("ASAP_SPACES", str(USERWL))
    with pytest.raises(PolicyError, match="not a path|no space named") as info:
        graph.invoke(_task(space=space, llm=False))
    assert "root:" not in str(info.value) and "hunter2" not in str(info.value)
    monkeypatch.delenv("ASAP_SPACES")
    with pytest.raises(PolicyError, match="takes no space files from clients"):
        graph.invoke(_task(space="simulated", llm=False))


@pytest.mark.parametrize(("settings", "said"), [
    ({"db": "/tmp/elsewhere.db"}, "'db': set by the server's operator"),
    ({"optuna_storage": "sqlite:////tmp/victim.sqlite"}, "'optuna_storage': set by"),
    ({"backend": "ray"}, "'backend': set by"),
    ({"workers": 1024}, "workers: at most"),
])
def test_ledgers_mirrors_and_workers_are_the_operators(operator, settings, said):
    """Items 5 and 6: a client wrote Optuna's tables into any SQLite file, picked the ledger,
    and asked for 1024 workers."""
    with pytest.raises(PolicyError, match=said):
        graph.invoke(_task(llm=False, **settings))
    assert not Path("/tmp/victim.sqlite").exists() and not (operator / "served.db").exists()


def test_the_caps_come_from_the_servers_environment(operator, monkeypatch):
    monkeypatch.setenv("ASAP_MAX_TRIALS", "5")
    with pytest.raises(PolicyError, match="trials: at most 5 on this server, got 100000"):
        graph.invoke(_task(trials=100_000, llm=False))
    monkeypatch.setenv("ASAP_MAX_TIME_S", "60")
    policy = ServerPolicy.from_env()
    assert policy.task("hpobench:australian", 3, {})["time_budget_s"] == 60
    assert policy.task("hpobench:australian", 3, {"time_budget_s": 3600})["time_budget_s"] == 60
    assert policy.task("hpobench:australian", 3, {"time_budget_s": 10})["time_budget_s"] == 10
    monkeypatch.setenv("ASAP_MAX_WORKERS", "many")
    with pytest.raises(ValueError, match="ASAP_MAX_WORKERS must be a number, got 'many'"):
        ServerPolicy.from_env()


def test_in_your_own_app_every_setting_is_yours(operator):
    out = build_tune_graph().invoke(_task(llm=False, isolate=False,
                                          db=str(operator / "mine.db")))
    assert out["result"]["complete"] == 3 and Ledger(operator / "mine.db").has_study(
        "hpobench-australian")


def _chat(tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver

    from asap.graphs.chat import build_chat_graph
    return build_chat_graph(InMemorySaver()), {"configurable": {"thread_id": "t"}}


def _plan(study, workload="hpobench:australian"):
    return {"workload": workload, "trials": 3, "time_budget_s": None, "study": study,
            "metric": "val_acc", "direction": "maximize",
            "params": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}}


def test_a_plain_sdk_client_reaches_the_chat_on_the_operators_context(operator, monkeypatch):
    """Item 7: a server passes its client's context ({} for a plain client): it failed with
    "missing 1 required positional argument: 'llm'". A context without a live model is the
    client's: the operator's (ASAP_BASE_URL, ASAP_DB) replaces it whole, its db too."""
    from langchain_core.messages import HumanMessage

    from asap.graphs.chat_state import ChatContext, env_context
    fake = FakeOpenAI(answer='{"intent": "question"}').start()
    monkeypatch.setenv("ASAP_BASE_URL", fake.base_url)
    env_context.cache_clear()
    try:
        chat, config = _chat(operator)
        out = chat.invoke({"messages": [HumanMessage("hello")]}, config,
                          context=ChatContext(db=str(operator / "clients.db")))
        assert out["messages"][-1].content and fake.requests  # the operator's endpoint
        assert not (operator / "clients.db").exists()
    finally:
        env_context.cache_clear()
        fake.stop()


def test_a_plan_written_into_the_thread_is_checked_before_anything_is_written(operator,
                                                                              monkeypatch):
    """Item 4: a client's update_state put a path in the plan's study, and the space file was
    written there before the study name was checked; on a server, a plan's workload passes the
    operator's policy too."""
    from fakes import ScriptedModel, chat_script

    from asap.agent.config import ConfigError
    from asap.graphs.chat_state import ChatContext, env_context
    outside = operator / "outside"
    outside.mkdir()
    chat, config = _chat(operator)
    ctx = ChatContext(llm=ScriptedModel(chat_script), db=str(operator / "c.db"),
                      space_dir=operator)
    chat.update_state(config, {"plan": _plan(str(outside / "TRAVERSED")), "phase": "go"},
                      as_node="confirm")
    with pytest.raises(ConfigError, match="is not a study name"):
        chat.invoke(None, config, context=ctx)
    assert list(outside.iterdir()) == [] and not (operator / "c.db").exists()
    # Served (the operator's context): a module the operator does not serve is refused too.
    monkeypatch.setenv("ASAP_BASE_URL", "http://127.0.0.1:9/v1")
    env_context.cache_clear()
    try:
        chat, config = _chat(operator)
        chat.update_state(config, {"plan": _plan("s", "userscript:f"), "phase": "go"},
                          as_node="confirm")
        with pytest.raises(PolicyError, match="is not served here"):
            chat.invoke(None, config, context=ChatContext())
        assert not (operator / "s.space.yaml").exists()
    finally:
        env_context.cache_clear()


def test_workers_left_unset_or_every_core_stay_within_the_operators_cap(monkeypatch):
    """Unset, a session grows to fill the cores (one per GPU on a GPU host); -1 is every core:
    neither may pass ASAP_MAX_WORKERS."""
    import asap.graphs.policy as policy

    monkeypatch.setattr(policy, "every_core", lambda: 8)
    monkeypatch.setattr(policy, "default_workers", lambda: 1)  # a CPU host of 8 cores
    capped = ServerPolicy(max_workers=2)
    assert capped.task("hpobench:australian", 3, {})["workers"] == 1  # pinned: no growth
    with pytest.raises(PolicyError, match="workers: at most 2 on this server, got 8"):
        capped.task("hpobench:australian", 3, {"workers": -1})
    monkeypatch.setattr(policy, "default_workers", lambda: 8)  # a host of 8 GPUs
    assert capped.task("hpobench:australian", 3, {})["workers"] == 2
    roomy = ServerPolicy(max_workers=8)
    assert "workers" not in roomy.task("hpobench:australian", 3, {})  # the default, as is
    assert roomy.task("hpobench:australian", 3, {"workers": -1})["workers"] == 8
