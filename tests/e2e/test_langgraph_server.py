"""The graphs on LangGraph's own dev server (``langgraph dev``), driven by langgraph-sdk as an
app would: the endpoint from the server's environment, Studio's schemas, ``runs.cancel``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import FakeOpenAI

from asap.cli.main import main
from asap.tools.ledger.store import Ledger

USERWL = Path(__file__).parents[1] / "userwl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(check, what: str, timeout_s: float = 180.0):
    """Wait for ``check()`` to return something truthy (an event), failing with ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def dev_server(tmp_path):
    """``langgraph dev`` on 127.0.0.1 with asap's graphs and an LLM endpoint in its env."""
    if shutil.which("langgraph", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("langgraph-cli is part of the dev extra: pip install -e '.[dev]'")
    fake = FakeOpenAI().start()
    # The file a pip-install user gets from `asap init-langgraph`, in a directory outside the
    # repo: the graphs load by module path from the installed package.
    assert main(["init-langgraph", "--dir", str(tmp_path), "--base-url", fake.base_url,
                 "--model", "fake"]) == 0
    config = tmp_path / "langgraph.json"
    spec = json.loads(config.read_text())
    assert all(not ref.startswith(".") for ref in spec["graphs"].values())
    # The operator's policy: its ledger, its folder of space files, the user workloads it
    # serves (asap.graphs.policy).
    spec["env"].update({"ASAP_DB": str(tmp_path / "chat.db"), "ASAP_SPACES": str(USERWL),
                        "ASAP_WORKLOADS": "faulty:reports_then_hangs"})
    config.write_text(json.dumps(spec))
    port = _free_port()
    # It runs in tmp_path (its .langgraph_api/ state lands there, not in the repo); the test
    # workloads are importable through PYTHONPATH.
    env = {**os.environ, "LANGGRAPH_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false",
           "PYTHONPATH": os.pathsep.join([str(USERWL), os.environ.get("PYTHONPATH", "")])}
    # Its log goes to a file: a pipe nobody reads fills up (64 KB) and the server then blocks
    # on its next log line, mid-run (seen: a cancelled session that never ended).
    log = tmp_path / "langgraph-dev.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "langgraph"), "dev", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
        cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        from langgraph_sdk import get_sync_client
        client = get_sync_client(url=url)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"langgraph dev exited: {log.read_text()[-3000:]}")
            try:
                return client.assistants.search(limit=10)
            except Exception:  # noqa: BLE001 - not up yet
                return None
        _until(ready, "langgraph dev answers", 240)
        yield client, fake
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        fake.stop()


@pytest.mark.e2e
def test_a_server_run_uses_the_env_endpoint_shows_schemas_and_cancels(dev_server, tmp_path):
    client, fake = dev_server
    tune = next(a for a in client.assistants.search(graph_id="tune"))
    schemas = client.assistants.get_schemas(tune["assistant_id"])
    assert schemas["input_schema"]["required"] == ["workload"]  # Studio's input form
    assert "result" in schemas["output_schema"]["properties"]
    assert "cost_weight" in json.dumps(schemas["input_schema"])  # TuneConfig's fields

    # Progress as the run goes: each decision, trial start and result a custom event.
    streamed = client.threads.create()
    events = [part.data for part in client.runs.stream(
        streamed["thread_id"], tune["assistant_id"], stream_mode="custom", input={
            "workload": "hpobench:australian", "trials": 3, "settings": {"llm": False}})
        if part.event == "custom"]
    assert [e["event"] for e in events if e["event"] != "report"].count("trial") == 3
    assert sum(e["event"] == "decision" for e in events) == 3

    db = tmp_path / "chat.db"  # the operator's ledger
    thread = client.threads.create()
    run = client.runs.create(thread["thread_id"], tune["assistant_id"], input={
        "workload": "faulty:reports_then_hangs", "trials": 3,
        "settings": {"study": "s", "space": "space"}})

    def reported():
        if not db.exists() or not Ledger(db).has_study("s"):
            return None
        trials = Ledger(db).open_study("s").trials()
        return trials and trials[0].intermediate
    _until(reported, "the first trial reports")
    assert sum(fake.served.values()) >= 1  # the endpoint came from the server's env
    client.runs.cancel(thread["thread_id"], run["run_id"])

    # The session ends itself (its event is the last thing it writes), with one trial only.
    ended = _until(lambda: Ledger(db).open_study("s").events("session"), "the session ends")
    assert ended[-1]["detail"]["interrupted"] is True
    trials = Ledger(db).open_study("s").trials()
    assert [(t.status, t.error) for t in trials] == [("failed", "cancelled: the run was cancelled")]
    # The thread's state holds the result so far, marked cancelled.
    state = _until(lambda: client.threads.get_state(thread["thread_id"])["values"].get(
        "cancelled") and client.threads.get_state(thread["thread_id"])["values"],
        "a partial result in the thread's state", 60)
    assert state["result"]["failed"] == 1 and state["result"]["study"] == "s"
    # The thread again, asking for no more trials than the study has: none run, it says so
    # (a custom event), and the result's ``ran`` is 0.
    parts = list(client.runs.stream(thread["thread_id"], tune["assistant_id"],
                                    stream_mode=["custom", "values"], input={
                                        "workload": "faulty:reports_then_hangs", "trials": 1,
                                        "settings": {"study": "s", "space": "space"}}))
    said = [p.data["text"] for p in parts if p.event == "custom" and p.data["event"] == "message"]
    assert any("already has 1 finished trials" in text for text in said), said
    final = [p.data for p in parts if p.event == "values"][-1]
    assert final["result"]["ran"] == 0 and final["result"]["trials"] == 1


@pytest.mark.e2e
def test_a_client_cannot_take_the_servers_key_files_or_imports(dev_server, tmp_path):
    """Issue 37's probes as a langgraph-sdk client sends them: an endpoint of its own (the
    server's OPENAI_API_KEY went there with every prompt), a module to import, a file to
    read; each run ends in one error naming the refusal, and nothing reaches the listener."""
    client, fake = dev_server
    listener = FakeOpenAI().start()
    try:
        (tmp_path / "userscript.py").write_text(
            "from pathlib import Path\nPath('imported').touch()\n"
            "def f(config, report):\n    return 1.0\n")
        probes = [
            ({"workload": "hpobench:australian", "trials": 5, "settings": {
                "clock": "virtual", "base_url": listener.base_url, "llm_after": 0}},
             "'base_url': set by the server's operator"),
            ({"workload": "userscript:f", "settings": {"llm": False}}, "is not served here"),
            ({"workload": "hpobench:australian", "settings": {"llm": False,
                                                             "space": "/etc/shadow"}},
             "not a path"),
            ({"workload": "hpobench:australian", "trials": 100000}, "trials: at most"),
        ]
        for task, said in probes:
            thread = client.threads.create()
            out = client.runs.wait(thread["thread_id"], "tune", input=task, raise_error=False)
            text = json.dumps(out)
            assert said in text and "root:" not in text, text[-2000:]
        assert listener.requests == [] and not (tmp_path / "imported").exists()
        # The chat for a plain client (the server passes it {} as context): it answers on the
        # operator's endpoint; a context naming another ledger is the client's and ignored.
        thread = client.threads.create()
        before = len(fake.requests)
        out = client.runs.wait(thread["thread_id"], "chat", input={"messages": [
            {"role": "user", "content": "hello"}]}, context={"db": str(tmp_path / "mine.db")})
        assert out["messages"][-1]["type"] == "ai" and out["messages"][-1]["content"]
        assert len(fake.requests) > before and not (tmp_path / "mine.db").exists()
    finally:
        listener.stop()
