"""The graphs as a LangGraph server runs them: async, cancellable, configured by environment,
with the schemas Studio draws its forms from. A scripted chat model decides; trials are real."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from fakes import FakeOpenAI, ScriptedModel, chat_script
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from asap.graphs.app import build_tune_graph
from asap.graphs.background import CANCELLED
from asap.graphs.chat import ChatContext, build_chat_graph
from asap.graphs.session import CTRL_C
from asap.tools.ledger.store import Ledger

USERWL = Path(__file__).parents[1] / "userwl"
ROOT = Path(__file__).parents[2]


def json_decider(messages, kwargs):
    if "response_format" not in kwargs:
        return AIMessage(content="Ready.")
    return AIMessage(content='{"action": "train", "choice": "A"}')


async def _until(check, what: str, timeout_s: float = 120.0) -> None:
    """Wait for ``check()`` (an event in the ledger), not for the clock; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


def test_cancelling_a_server_run_stops_its_trials(tmp_path, monkeypatch):
    """``runs.cancel`` cancels the run's asyncio task: the session fails its running trial with
    the reason, starts no other and logs itself as interrupted."""
    monkeypatch.chdir(USERWL)
    db = tmp_path / "s.db"
    graph = build_tune_graph(ScriptedModel(json_decider))
    task_input = {"workload": "faulty:reports_then_hangs", "trials": 3,
                  "settings": {"db": str(db), "study": "s", "space": str(USERWL / "space.yaml")}}

    def reported() -> bool:
        ledger = Ledger(db) if db.exists() else None
        return bool(ledger and ledger.has_study("s") and any(
            t.intermediate for t in ledger.open_study("s").trials()))

    async def main() -> None:
        run = asyncio.ensure_future(graph.ainvoke(task_input))
        await _until(reported, "the first trial reports")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    study = Ledger(db).open_study("s")
    assert [(t.status, t.error) for t in study.trials()] == [("failed", CANCELLED)]
    assert study.events("session")[-1]["detail"]["interrupted"] is True


def test_a_chat_session_stops_on_cancel_and_the_thread_goes_on(tmp_path, monkeypatch):
    """The terminal's Ctrl-C sets the context's cancel while the tune node runs on a worker
    thread: the trial is failed "interrupted", no other starts, and the next question is
    answered about the stopped study (not read as a new request)."""
    monkeypatch.chdir(USERWL)
    model = ScriptedModel(chat_script)
    ctx = ChatContext(llm=model, db=str(tmp_path / "c.db"), tune_llm=model, space_dir=tmp_path)
    graph = build_chat_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [HumanMessage(
        "tune the lr of faulty:reports_then_hangs for score, 3 trials")]}, config, context=ctx)
    seen = []
    for mode, chunk in graph.stream(Command(resume="yes"), config, context=ctx,
                                    stream_mode=["custom", "updates"]):
        if mode == "custom":
            seen.append(chunk)
            if "report" in chunk:  # what the live display shows; then the person's Ctrl-C
                ctx.cancel.cancel(CTRL_C)
    assert [k for k in ("started", "report", "trial") if any(k in e for e in seen)] == [
        "started", "report", "trial"]
    state = graph.get_state(config).values
    assert state["phase"] == "done" and state["messages"][-1].content.startswith("Stopped")
    study = Ledger(ctx.db).open_study(state["study"])
    assert [(t.status, t.error) for t in study.trials()] == [("failed", CTRL_C)]
    assert study.events("session")[-1]["detail"]["interrupted"] is True
    ctx.cancel.clear()
    out = graph.invoke({"messages": [HumanMessage("what were the top 3?")]}, config, context=ctx)
    assert out["messages"][-1].content.startswith(f"No trial of {study.name} has completed")


def test_tune_graph_reads_the_endpoint_from_the_environment(tmp_path, monkeypatch):
    """langgraph.json's ``env`` names the LLM: a task whose settings name none uses it."""
    fake = FakeOpenAI().start()
    try:
        monkeypatch.setenv("ASAP_BASE_URL", fake.base_url)
        monkeypatch.setenv("ASAP_MODEL", "fake")
        out = build_tune_graph().invoke({"workload": "hpobench:australian", "trials": 4,
                                         "settings": {"db": str(tmp_path / "e.db"),
                                                      "ask": "always"}})
    finally:
        fake.stop()
    # the protocol probe, then round 4's decision (rounds 1-3: the start-up, llm_after)
    assert out["result"]["trials"] == 4 and sum(fake.served.values()) >= 2


def test_graphs_publish_input_and_output_schemas():
    """What LangGraph Studio draws its input form from (typing_extensions.TypedDict on 3.11)."""
    from asap.graphs.app import chat_graph, graph
    tune_in = graph.get_input_jsonschema()
    assert tune_in["required"] == ["workload"] and {"trials", "settings"} <= set(
        tune_in["properties"])
    assert graph.get_output_jsonschema()["required"] == ["result"]
    assert "messages" in chat_graph.get_input_jsonschema()["properties"]
    assert "messages" in chat_graph.get_output_jsonschema()["properties"]


def test_llm_serve_port_is_the_one_langgraph_json_names():
    from asap.agent.llm.server import SERVE_PORT
    from asap.cli.parser import build_parser as _parser
    env = json.loads((ROOT / "langgraph.json").read_text())["env"]
    assert env["ASAP_BASE_URL"] == f"http://127.0.0.1:{SERVE_PORT}/v1"
    assert _parser().parse_args(["llm", "serve"]).port == SERVE_PORT


def test_a_busy_port_is_refused_before_the_model_loads():
    import socket

    from asap.agent.llm.server import ServerError, check_port_free
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ServerError, match=f"port {busy.getsockname()[1]} .* not free"):
            check_port_free(busy.getsockname()[1])
