"""Whole ``asap tune`` sessions as a person runs them: subprocesses on the embedded llama.cpp server."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asap.tools.ledger.store import Ledger


@pytest.mark.e2e
@pytest.mark.timeout(1600)  # past its two sessions' own limits (900 s and 600 s) on a busy machine
def test_asap_tune_runs_real_digits_trials_on_the_embedded_llm(tmp_path):
    db = tmp_path / "e2e.db"
    # --ask always: the LLM decides every round after the start-up ones, whatever it costs
    # (priced, as the resume below runs, a 2-s call beside 3-s trials would not be asked).
    done = subprocess.run([sys.executable, "-m", "asap.cli", "tune", "digits-mlp",
                           "--trials", "5", "--ask", "always", "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["complete"] == 5 and result["best_value"] > 0.5  # chance is 0.1
    study = Ledger(db).open_study("digits-mlp")
    calls = study.timings("llm_call")
    assert result["protocol"] == "json"  # auto: SmolLM2 answers the tools probe with text
    # The first three rounds are the tools' start-up samples (llm_after): the LLM decides
    # rounds 4 and 5, and the server reports its cache on each call.
    assert [e["detail"]["by"] for e in study.events("decision")][:3] == ["prior"] * 3
    assert len(calls) >= 2 and all(c["cached_tokens"] is not None for c in calls)
    assert max(c["cached_tokens"] for c in calls) > 0
    # Resuming with a larger budget continues the same study; priced (the default), the
    # call costs more than these trials and the LLM never departed: the prior decides, and the
    # ledger and the summary say why.
    again = subprocess.run([sys.executable, "-m", "asap.cli", "tune", "digits-mlp",
                            "--trials", "6", "--db", str(db), "--json"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads(again.stdout)
    assert resumed["trials"] == 6 and len(study.timings("llm_call")) == len(calls)
    assert study.events("decision")[-1]["detail"]["by"] == "prior"
    assert "has not yet beaten the prior" in resumed["llm_asked"]["why"]


@pytest.mark.e2e
@pytest.mark.parametrize(("sig", "rc", "said", "reason"), [
    (signal.SIGINT, 130, "interrupted", "Ctrl-C"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)", "SIGTERM")])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_study_resumes(tmp_path, sig, rc, said, reason):
    db = tmp_path / "int.db"
    cmd = [sys.executable, "-m", "asap.cli", "tune", "digits-mlp", "--trials", "30",
           "--db", str(db), "--study", "int"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for one finished trial and a second one training
        time.sleep(0.5)
        if db.exists() and Ledger(db).has_study("int"):
            trials = Ledger(db).open_study("int").trials()
            if len(trials) >= 2 and trials[-1].status == "running":
                break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err[-2000:]
    assert said in err and "Traceback" not in err
    study = Ledger(db).open_study("int")
    trials = study.trials()
    assert all(t.status != "running" for t in trials)  # nothing left half-done
    assert trials[-1].status == "failed" and reason in trials[-1].error
    assert study.events("session")[-1]["detail"]["interrupted"] is True
    done = subprocess.run([*cmd[:5], "--trials", str(len(trials) + 1), *cmd[7:], "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["trials"] == len(trials) + 1


@pytest.mark.e2e
def test_speculation_runs_on_the_real_llm_beside_a_simulated_clock(tmp_path):
    """Trials of an hour on the virtual clock: every LLM call, on any machine, is back before
    the trial it overlaps lands (the clock cannot jump past a call still running), so the
    order of events below holds on a slow or busy machine as on a quick one."""
    db = tmp_path / "spec.db"
    userwl = Path(__file__).parents[1] / "userwl"
    done = subprocess.run([sys.executable, "-m", "asap.cli", "tune", "simulated:hour",
                           "--space", "simulated.yaml", "--clock", "virtual", "--trials", "6",
                           "--trial-timeout", "7200",
                           "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=900, cwd=userwl)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["complete"] == 6
    study = Ledger(db).open_study("simulated-hour")
    calls = study.timings("llm_call")
    spec = [c for c in calls if c["detail"].get("speculative") and not c["detail"].get("ahead")]
    judged = study.events("speculation")
    # Round 1 trains the start-up pick while its prompt is asked in the background, before any
    # trial; rounds 2-3 are start-up picks too (llm_after), and the answer decides round 4.
    assert calls[0]["detail"].get("ahead") and calls[0]["detail"]["round"] == 1
    by = {e["detail"]["round"]: e["detail"]["by"] for e in study.events("decision")}
    taken = study.events("ahead")[0]["detail"]
    assert by[1] == "plan" and by[2] == by[3] == "prior"
    assert taken["asked"] == 1 and taken["round"] == 4 and by[4] == "llm"
    assert spec and judged and len(judged) == len(study.timings("speculation"))
    trains = study.timings("train")
    assert all(t["end"] - t["start"] == pytest.approx(3600.0) for t in trains)
    judged_at = {e["detail"]["round"]: e["at"] for e in judged}
    for c in spec:  # asked once a trial was in flight, answered before it was judged
        assert any(t["start"] <= c["start"] for t in trains)
        if not c["detail"].get("cancelled") and c["detail"]["round"] in judged_at:
            assert c["end"] <= judged_at[c["detail"]["round"]]
