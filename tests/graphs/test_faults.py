"""Faults of the LLM endpoint, injected for real over HTTP on 127.0.0.1; secrets never logged.

Sessions ask the LLM from the first round (llm_after=0), so each fault meets a known round.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from fakes import FakeOpenAI
from langchain_core.messages import HumanMessage

from asap.agent.config import TuneConfig
from asap.graphs.session import tune
from asap.tools.ledger.store import Ledger

SECRET = "sk-test-DO-NOT-LOG-7f3a9c"


@pytest.fixture
def server():
    fake = FakeOpenAI(slow_s=3.0).start()
    yield fake
    fake.stop()


def session(db, server, trials, **kw):
    cfg = TuneConfig(llm_after=0, ask="always", workload="hpobench:australian", trials=trials, db=str(db), study="f",
                     base_url=server.base_url, model="fake", api_key=SECRET, decide="json",
                     speculation="off", llm_timeout_s=1.0, **kw)
    return tune(cfg)


def test_every_kind_of_endpoint_fault_falls_back_and_the_llm_comes_back(tmp_path, server):
    # Odd rounds answer; in rounds 2, 4 and 6 a fault meets all 3 attempts (the client's 2
    # retries with backoff) and in round 8 a body that is not JSON (not retried): fallback
    # rounds (never two in a row, so the circuit stays closed). Round 9 gets half a decision
    # (the guard asks again), round 10 answers.
    for kind in ["500", "reset", "slow"]:
        server.faults.extend(["ok", *[kind] * 3])
    server.faults.extend(["ok", "garbled", "truncated"])
    s = session(tmp_path / "f.db", server, trials=10)
    study = Ledger(tmp_path / "f.db").open_study("f")
    assert s["trials"] == 10 and s["complete"] == 10  # the session never stalled
    assert server.served["500"] == 3 and server.served["reset"] == 3 and server.served["slow"] == 3
    reasons = [e["detail"]["reason"] for e in study.events("llm_error")]
    assert [r.split(":")[0] for r in reasons] == [
        "OpenAIAPIError", "OpenAIConnectionError", "OpenAITimeoutError", "JSONDecodeError"]
    assert "500" in reasons[0]
    fell = {e["detail"]["round"] for e in study.events("fallback")}
    assert fell == {2, 4, 6, 8}  # one fallback per faulty round, with its reason logged
    assert s["retries"] == 1  # round 9: the truncated answer went back once, then it answered
    assert s["llm_failed_calls"] == 4 and not study.events("llm_breaker")
    assert all(c["duration"] < 30 for c in study.timings("llm_call"))


def test_a_dead_endpoint_opens_the_circuit_and_a_probe_closes_it(tmp_path, server):
    # Every request fails for the first 9 (3 failed calls of 3 attempts each), then it answers.
    server.faults.extend(["reset"] * 9)
    s = session(tmp_path / "b.db", server, trials=18)
    study = Ledger(tmp_path / "b.db").open_study("f")
    assert s["complete"] == 18
    states = [(e["detail"]["state"]) for e in study.events("llm_breaker")]
    assert states == ["open", "open", "closed"]
    # Rounds 1-2 fail: open for 4 rounds (3-6, no request); round 7's probe fails: open for 8
    # (8-15); round 16's probe answers: closed, and rounds 17-18 ask as usual.
    asked = sorted({c["detail"]["round"] for c in study.timings("llm_call")})
    assert asked == [1, 2, 7, 16, 17, 18]
    assert server.served["reset"] == 9 and server.served["ok"] == 3
    fell = sorted(e["detail"]["round"] for e in study.events("fallback"))
    assert fell == [r for r in range(1, 16)]  # every round up to the probe that answered


def test_a_truncated_decision_is_retried_then_answered(tmp_path, server):
    server.faults.append("truncated")  # half a JSON object
    s = session(tmp_path / "t.db", server, trials=2)
    study = Ledger(tmp_path / "t.db").open_study("f")
    assert s["complete"] == 2 and s["retries"] == 1 and s["fallbacks"] == 0
    assert study.events("guard_retry")


def test_the_api_key_reaches_the_server_and_nowhere_else(tmp_path, server):
    db = tmp_path / "k.db"
    done = subprocess.run(
        [sys.executable, "-m", "asap.cli", "tune", "hpobench:australian", "--trials", "3",
         "--db", str(db), "--base-url", server.base_url, "--model", "fake", "--decide", "json",
         "--speculation", "off", "--json"],
        capture_output=True, text=True, timeout=300, env={**_env(), "OPENAI_API_KEY": SECRET})
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(r["headers"].get("authorization") == f"Bearer {SECRET}" for r in server.requests)
    report = subprocess.run([sys.executable, "-m", "asap.cli", "report", "hpobench-australian",
                             "--db", str(db), "--out", str(tmp_path / "t.png")],
                            capture_output=True, text=True, timeout=120)
    for text in (done.stdout, done.stderr, report.stdout, report.stderr):
        assert SECRET not in text
    for path in tmp_path.rglob("*"):  # the ledger, its WAL, the report, any trial log
        assert path.is_dir() or SECRET.encode() not in path.read_bytes()


def _env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}


def test_the_time_budget_stops_a_trial_that_is_still_running(tmp_path, server, monkeypatch):
    userwl = __import__("pathlib").Path(__file__).parents[1] / "userwl"
    monkeypatch.chdir(userwl)
    cfg = TuneConfig(llm_after=0, ask="always", workload="faulty:hangs", space=str(userwl / "space.yaml"), trials=5,
                     time_budget_s=2.0, db=str(tmp_path / "h.db"), study="h",
                     base_url=server.base_url, model="fake", decide="json", speculation="off")
    s = tune(cfg)
    trials = Ledger(tmp_path / "h.db").open_study("h").trials()
    assert s["trials"] == 1 and trials[0].status == "failed"
    assert trials[0].error == "stopped: the session's time budget ran out during this trial"


def test_what_the_workload_prints_goes_to_its_trial_log_not_stdout(tmp_path, server):
    import json
    from pathlib import Path
    userwl = Path(__file__).parents[1] / "userwl"
    db = tmp_path / "p.db"
    done = subprocess.run(
        [sys.executable, "-m", "asap.cli", "tune", "faulty:chatty", "--space",
         str(userwl / "space.yaml"), "--trials", "2", "--db", str(db), "--base-url",
         server.base_url, "--model", "fake", "--decide", "json", "--json"],
        capture_output=True, text=True, timeout=300, cwd=userwl)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["complete"] == 2  # stdout is the result alone
    assert "epoch 1" not in done.stdout + done.stderr
    for t in Ledger(db).open_study("faulty-chatty").trials():
        text = Path(t.meta["log"]).read_text()
        assert f"epoch 1: x={t.config['x']}" in text and "a warning" in text
        assert Path(t.meta["log"]).is_relative_to(tmp_path)  # beside the ledger


def test_asap_optimize_takes_a_python_objective_and_optuna_style_callbacks(tmp_path, server,
                                                                           monkeypatch):
    import sys
    from pathlib import Path

    import asap
    userwl = Path(__file__).parents[1] / "userwl"
    monkeypatch.syspath_prepend(str(userwl))
    monkeypatch.chdir(userwl)  # the worker imports the objective's module from here
    import faulty
    seen = []
    result = asap.optimize(faulty.quadratic, {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                           n_trials=3, direction="minimize", db=str(tmp_path / "o.db"),
                           base_url=server.base_url, model="fake", decide="json",
                           callbacks=[lambda study, trial: seen.append((study.study_name, trial.number))])
    assert result.complete == 3 and result.study == "faulty-quadratic"
    assert result.best_value == min(t.value for t in
                                    Ledger(tmp_path / "o.db").open_study(result.study).trials())
    assert seen == [("faulty-quadratic", 0), ("faulty-quadratic", 1), ("faulty-quadratic", 2)]
    with pytest.raises(ValueError, match="cannot run in a worker process"):
        asap.optimize(lambda config, report: 1.0, {"x": {"type": "float", "low": 0, "high": 1}},
                      db=str(tmp_path / "l.db"), base_url=server.base_url, model="fake")
    assert not (tmp_path / "l.db").exists()
    del sys.modules["faulty"]


@pytest.mark.parametrize("kind", ["no_choices", "without_choices", "bad_utf8", "empty"])
def test_an_answer_no_client_can_read_is_an_llm_error_not_the_end(tmp_path, server, kind):
    """A 200 with no choices, no answer object, bytes that are not UTF-8, or nothing: each
    call fails as an LLM error the breaker counts (the probe too), and the prior decides."""
    server.faults.extend([kind] * 3)  # the protocol probe, then rounds 1-2
    cfg = TuneConfig(llm_after=0, ask="always", workload="hpobench:australian", trials=4, db=str(tmp_path / "m.db"),
                     study="f", base_url=server.base_url, model="fake", decide="auto",
                     speculation="off", llm_timeout_s=5.0)
    s = tune(cfg)
    study = Ledger(tmp_path / "m.db").open_study("f")
    assert s["complete"] == 4 and server.served[kind] == 3
    assert study.events("protocol")[0]["detail"]["reason"].startswith("tools: the probe failed")
    reasons = [e["detail"]["reason"] for e in study.events("llm_error")]
    assert len(reasons) == 2 and all(r.startswith(("MalformedAnswer", "JSONDecodeError")) for r in reasons), reasons
    assert s["llm_failed_calls"] == 2  # then the circuit opened: the prior decided rounds 3-4
    assert [e["detail"]["state"] for e in study.events("llm_breaker")] == ["open"]


def test_a_server_that_drips_its_answer_meets_the_calls_deadline(tmp_path, server):
    """A byte every 0.1 s never trips the client's per-read timeout: the call's total deadline
    (every attempt's timeout and the waits between them: 3 x 1 s + 4 s here) ends it as an LLM
    error and the prior decides."""
    server.faults.append("drip")
    s = session(tmp_path / "d.db", server, trials=2)
    study = Ledger(tmp_path / "d.db").open_study("f")
    assert s["complete"] == 2 and server.served["drip"] == 1
    [error] = study.events("llm_error")
    assert error["detail"]["reason"].startswith("DeadlineExceeded: the LLM call did not complete "
                                                "within 7 s")
    failed = [c for c in study.timings("llm_call") if c["detail"].get("failed")]
    assert len(failed) == 1 and failed[0]["duration"] < 10


def test_a_models_list_that_drips_meets_the_probes_deadline(server):
    from asap.agent.llm.server import ServerError, probe
    server.drip_models = True
    with pytest.raises(ServerError, match="did not complete within 1 s"):
        probe(server.base_url, timeout_s=1.0)


@pytest.mark.parametrize("kind", ["unstreamed", "unstreamed_empty"])
def test_a_server_that_ignores_stream_true_is_an_llm_error(server, kind):
    """A streamed (cancellable) call, as speculation makes, answered with one plain JSON body
    (with choices or without): the openai SDK's stream parser failed an assertion, outside
    llm_errors(), and the session crashed."""
    import threading

    from asap.agent.llm.client import MalformedAnswer, chat_model, llm_errors, timed_invoke
    server.faults.append(kind)
    model = chat_model(server.base_url, "fake", timeout_s=5.0)
    with pytest.raises(llm_errors()) as info:
        timed_invoke(model, [HumanMessage("Name one optimizer.")], study=None, protocol="json",
                     cancel=threading.Event())
    assert isinstance(info.value, MalformedAnswer)


def test_a_cancel_ends_the_session_while_its_llm_call_hangs(tmp_path):
    """Issue 37 (8): a served run cancelled while its decision call waits on a server that
    does not answer (here for 10 minutes, under a 10-minute deadline): the session stops
    waiting for the call at once, fails its trials, logs its end and raises Cancelled."""
    import threading

    from asap.tools.types import Cancel, Cancelled

    hanging = FakeOpenAI(slow_s=600.0).start()
    try:
        hanging.faults.extend(["ok", "slow"])  # the protocol probe answers; round 1 hangs
        cancel, ended = Cancel(), []
        cfg = TuneConfig(llm_after=0, ask="always", workload="hpobench:australian", trials=3,
                         db=str(tmp_path / "c.db"), study="c", base_url=hanging.base_url,
                         model="fake", decide="json", speculation="off", llm_timeout_s=600.0)

        def run() -> None:
            try:
                tune(cfg, cancel=cancel)
            except Cancelled as exc:
                ended.append(exc)
        session_thread = threading.Thread(target=run, daemon=True)
        session_thread.start()
        while hanging.served["slow"] == 0:  # the decision call is in flight
            hanging.arrived.wait(1.0)
        cancel.cancel("cancelled: the run was cancelled")
        session_thread.join(120)  # bounds a failure only: without the fix it waited 10 min
        assert not session_thread.is_alive() and len(ended) == 1
        study = Ledger(tmp_path / "c.db").open_study("c")
        assert study.events("session")[-1]["detail"]["interrupted"] is True
        assert any(c["detail"].get("cancelled") for c in study.timings("llm_call"))
    finally:
        hanging.stop()
