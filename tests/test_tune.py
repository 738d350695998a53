"""The tuning loop: fallback path offline, and a real session on the embedded llama.cpp server."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asap.agent.guard import fallback
from asap.agent.ledger import Ledger
from asap.agent.prompt import PromptBuilder
from asap.agent.tune import TOOLS_TEXT
from asap.graphs.tuning import Runtime, build_tuning_graph
from asap.tools.portfolio import Portfolio
from asap.tools.trainer import Trainer
from asap.tools.workloads import resolve


def test_without_an_llm_the_fallback_decides_every_round(tmp_path):
    wl = resolve("hpobench:australian")
    study = Ledger(tmp_path / "l.db").create_study("f", wl.space, metric=wl.metric,
                                                   direction=wl.direction, workload=wl.ref)
    rt = Runtime(study, Portfolio(study), Trainer(study, wl), PromptBuilder(study, TOOLS_TEXT),
                 llm=None, max_trials=4)
    state = build_tuning_graph(rt).invoke({}, {"recursion_limit": 50})
    assert len(study.trials(status="complete")) == 4
    assert state["fallbacks"] == 4 and len(study.events("fallback")) == 4
    assert study.trials()[0].tool == "optuna:tpe"  # no record yet: TPE
    assert len(rt.builder.log) == 4 and "Decision: A (optuna:tpe)." in rt.builder.log[0]


def test_fallback_prefers_the_best_record(ledger, toy_space):
    study = ledger.create_study("r", toy_space, metric="loss", direction="minimize")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    for tool, loss in [("optuna:tpe", 3.0), ("nevergrad:DE", 2.0), ("optuna:tpe", 2.5), ("nevergrad:DE", 1.0)]:
        tid = study.start_trial(cfg, tool=tool)
        study.finish_trial(tid, status="complete", metrics={"loss": loss})
    proposals = [("optuna:tpe", {"a": 1}), ("nevergrad:DE", {"b": 2})]
    assert fallback(study, proposals) == ("nevergrad:DE", {"b": 2})


@pytest.mark.e2e
def test_asap_tune_runs_real_digits_trials_on_the_embedded_llm(tmp_path):
    db = tmp_path / "e2e.db"
    done = subprocess.run([sys.executable, "-m", "asap.agent.cli", "tune", "digits-mlp",
                           "--trials", "5", "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["complete"] == 5 and result["best_value"] > 0.5  # chance is 0.1
    study = Ledger(db).open_study("digits-mlp")
    calls = study.timings("llm_call")
    assert result["protocol"] == "json"  # auto: SmolLM2 answers the tools probe with text
    assert len(calls) >= 5 and all(c["cached_tokens"] is not None for c in calls)
    assert max(c["cached_tokens"] for c in calls) > 0
    # Resuming with a larger budget continues the same study.
    again = subprocess.run([sys.executable, "-m", "asap.agent.cli", "tune", "digits-mlp",
                            "--trials", "6", "--db", str(db), "--json"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout)["trials"] == 6


def test_bad_input_is_a_clear_error(tmp_path):
    for args, message in [(["tune", "nope"], "unknown workload 'nope'"),
                          (["tune", "digits-mlp", "--db", str(tmp_path / "no" / "x.db")], "does not exist"),
                          (["tune", "digits-mlp", "--trials", "0"], "trials: Input should be greater than or equal to 1"),
                          (["tune", "digits-mlp", "--time-budget", "-3"], "time_budget_s: Input should be greater than 0"),
                          (["tune", "hpobench:australian", "--time-scale", "-1"], "time_scale"),
                          (["tune", "digits-mlp", "--depth", "0"], "depth: Input should be greater than or equal to 1"),
                          (["tune", "digits-mlp", "--depth", "deep"], "--depth must be an integer or auto"),
                          (["eval", "--methods", "tpe,nope"], "unknown method(s) ['nope']"),
                          (["eval", "--tasks", "hpobench:mars"], "unknown hpobench dataset 'mars'"),
                          (["tune", "digits-mlp", "--space", str(tmp_path / "none.yaml")], "none.yaml")]:
        done = subprocess.run([sys.executable, "-m", "asap.agent.cli", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and message in done.stdout + done.stderr


@pytest.mark.e2e
def test_ctrl_c_stops_cleanly_and_the_study_resumes(tmp_path):
    db = tmp_path / "int.db"
    cmd = [sys.executable, "-m", "asap.agent.cli", "tune", "digits-mlp", "--trials", "30",
           "--db", str(db), "--study", "int"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for one finished trial and a second one training
        time.sleep(0.5)
        if db.exists() and Ledger(db).has_study("int"):
            trials = Ledger(db).open_study("int").trials()
            if len(trials) >= 2 and trials[-1].status == "running":
                break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out + err
    study = Ledger(db).open_study("int")
    trials = study.trials()
    assert all(t.status != "running" for t in trials)  # nothing left half-done
    assert trials[-1].status == "failed" and "Ctrl-C" in trials[-1].error
    assert study.events("session")[-1]["detail"]["interrupted"] is True
    done = subprocess.run([*cmd[:5], "--trials", str(len(trials) + 1), *cmd[7:], "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["trials"] == len(trials) + 1


def test_auto_speculation_only_when_training_and_llm_do_not_share_the_cpu():
    import torch

    from asap.agent.config import TuneConfig
    from asap.agent.tune import speculation_mode
    local = TuneConfig(workload="digits-mlp")
    assert speculation_mode(local) == ("threshold" if torch.cuda.is_available() else "off")
    assert speculation_mode(TuneConfig(workload="digits-mlp", base_url="http://127.0.0.1:8000/v1")
                            ) == "threshold"
    assert speculation_mode(TuneConfig(workload="hpobench:australian")) == "threshold"
    assert speculation_mode(TuneConfig(workload="digits-mlp", speculation="off",
                                       base_url="http://127.0.0.1:8000/v1")) == "off"


@pytest.mark.e2e
def test_speculation_runs_on_the_real_llm_beside_a_simulated_clock(tmp_path):
    db = tmp_path / "spec.db"
    done = subprocess.run([sys.executable, "-m", "asap.agent.cli", "tune", "hpobench:australian",
                           "--trials", "6", "--time-scale", "0.3", "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["complete"] == 6
    study = Ledger(db).open_study("hpobench-australian")
    spec = [c for c in study.timings("llm_call") if c["detail"].get("speculative")]
    judged = study.events("speculation")
    assert spec and judged and len(judged) == len(study.timings("speculation"))
    trains = study.timings("train")
    for c in spec:  # the speculative decisions were asked while a trial trained
        assert any(t["start"] <= c["start"] <= t["end"] for t in trains)


@pytest.mark.parametrize("space, message", [
    ({"x": {"type": "quantum", "low": 0, "high": 1}}, "quantum"),
    ({"x": {"type": "float", "low": 2.0, "high": 1.0}}, "low"),
    ({"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log"),
    ({"a": {"type": "int", "low": 0, "high": 3, "when": {"parent": "b", "ge": 1}},
      "b": {"type": "int", "low": 0, "high": 3, "when": {"parent": "a", "ge": 1}}}, "cycle"),
])
def test_an_invalid_space_file_is_one_clear_line_and_writes_nothing(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(json.dumps({"metric": "score", "params": space}))
    db = tmp_path / "none.db"
    done = subprocess.run([sys.executable, "-m", "asap.agent.cli", "tune", "faulty:ok", "--space",
                           str(path), "--db", str(db)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent / "userwl")
    assert done.returncode == 2 and message in done.stdout and "Traceback" not in done.stderr
    assert not db.exists()


def test_bad_workloads_and_endpoints_write_nothing(tmp_path):
    db = tmp_path / "x.db"
    for args, message in [
            (["tune", "nosuchmodule:fit"], "cannot import module 'nosuchmodule'"),
            (["tune", "hpobench:australian", "--base-url", "localhost:8000"], "http(s) URL"),
            (["tune", "hpobench:australian", "--base-url", "http://127.0.0.1:9/v1",
              "--trials", "2"], "the LLM endpoint failed")]:
        done = subprocess.run([sys.executable, "-m", "asap.agent.cli", *args, "--db", str(db)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and message in done.stdout, done.stdout + done.stderr
        assert not db.exists() or not Ledger(db).study_names()  # no half-made study
