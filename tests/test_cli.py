import subprocess
import sys

from asap.agent import model
from asap.agent.cli import main


def test_show_prints_trials(tmp_path, toy_space, capsys):
    from asap.agent.ledger import Ledger
    study = Ledger(tmp_path / "l.db").create_study("demo", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="optuna:tpe")
    study.finish_trial(tid, status="complete", metrics={"loss": 0.25})
    assert main(["show", "demo", "--db", str(tmp_path / "l.db")]) == 0
    out = capsys.readouterr().out
    assert "optuna:tpe" in out and "best loss = 0.25 (trial 0, optuna:tpe)" in out
    assert main(["show", "nope", "--db", str(tmp_path / "l.db")]) == 2
    assert main(["show", "demo", "--db", str(tmp_path / "absent.db")]) == 2


def test_default_model_is_pulled_and_intact():
    """.ci/run pulls the model first (as the README says); here we check the file is really it."""
    path = model.pull(say=lambda m: None)
    assert path.stat().st_size > 90_000_000
    assert model.sha256(path) == model.SHA256


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "asap.agent.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "llm" in done.stdout
