"""The command line, in-process through ``main([...])``: every bad input is one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asap.agent.llm import model
from asap.cli.main import main
from asap.tools.ledger.store import Ledger

USERWL = Path(__file__).parents[1] / "userwl"


def test_show_prints_trials(tmp_path, toy_space, capsys):
    from asap.tools.ledger.store import Ledger
    study = Ledger(tmp_path / "l.db").create_study("demo", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="optuna:tpe")
    study.finish_trial(tid, status="complete", metrics={"loss": 0.25})
    assert main(["show", "demo", "--db", str(tmp_path / "l.db")]) == 0
    out = capsys.readouterr().out
    assert "optuna:tpe" in out and "best loss = 0.25 (trial 0, optuna:tpe)" in out
    assert main(["show", "nope", "--db", str(tmp_path / "l.db")]) == 2
    assert main(["show", "demo", "--db", str(tmp_path / "absent.db")]) == 2


def test_show_piped_prints_whole_configurations(tmp_path):
    """Issue 39 (9): piped, ``asap show`` lays its table out as wide as a line needs, never at
    rich's 80 columns (which cut a configuration)."""
    from asap.tools.hpo.space import Space
    from asap.tools.ledger.store import Ledger
    names = [f"a_rather_long_parameter_name_{i}" for i in range(6)]
    space = Space.from_dict({n: {"type": "float", "low": 0.0, "high": 1.0} for n in names})
    study = Ledger(tmp_path / "p.db").create_study("wide", space, metric="loss",
                                                   direction="minimize")
    tid = study.start_trial({n: 0.5 for n in names}, tool="nevergrad:NGOpt")
    study.finish_trial(tid, status="complete", metrics={"loss": 0.25})
    out = subprocess.run([sys.executable, "-m", "asap.cli", "show", "wide", "--db",
                          str(tmp_path / "p.db")], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(line for line in out.stdout.splitlines() if "nevergrad:NGOpt" in line)
    assert all(f"{n}=0.5" in row for n in names), out.stdout


def test_show_as_json_and_csv_and_the_studies_list(tmp_path, toy_space, capsys):
    import csv as csv_module
    db = tmp_path / "l.db"
    study = Ledger(db).create_study("demo", toy_space, metric="loss", direction="minimize",
                                    workload="toy")
    for x, loss in [(1.0, 0.5), (2.0, 0.25)]:
        tid = study.start_trial({"x": x, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
                                tool="optuna:tpe")
        study.finish_trial(tid, status="complete", metrics={"loss": loss})
    Ledger(db).create_study("empty", toy_space, metric="loss", direction="minimize")
    assert main(["show", "demo", "--db", str(db), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["summary"]["best_value"] == 0.25
    assert [(r["number"], r["param_x"], r["value"]) for r in got["trials"]] == [
        (0, 1.0, 0.5), (1, 2.0, 0.25)]
    assert got["trials"][0]["param_units_l3"] is None  # inactive: present, empty
    assert main(["show", "demo", "--db", str(db), "--csv"]) == 0
    rows = list(csv_module.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["value"] for r in rows] == ["0.5", "0.25"] and rows[1]["metric_loss"] == "0.25"
    assert main(["studies", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "toy" in out and "0.25" in out and "empty" in out
    frame = Ledger(db).open_study("demo").to_dataframe()
    assert list(frame["value"]) == [0.5, 0.25]


def test_version():
    done = subprocess.run([sys.executable, "-m", "asap.cli", "--version"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.startswith("asap-hpo 0.")


def test_default_model_is_pulled_and_intact():
    """The README's install pulls the model (``asap llm pull``, or the first ``asap tune``);
    here we check, without downloading, that the cached file is really it."""
    path = model.default_model_path()
    assert path.is_file(), f"no default model at {path}: run `asap llm pull` first"
    assert path.stat().st_size > 90_000_000
    assert model.sha256(path) == model.SHA256


def test_console_script_is_installed():
    """The one subprocess here: ``python -m asap.cli`` is how the e2e tests run the command."""
    done = subprocess.run([sys.executable, "-m", "asap.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "llm" in done.stdout


def test_show_and_report_take_the_workload_reference_and_report_out_is_a_directory(tmp_path,
                                                                                    capsys):
    """`asap show hpobench:australian` finds the study `hpobench-australian`; a name that is
    not there suggests the close ones; `report --out DIR` writes every file inside DIR."""
    db = str(tmp_path / "r.db")
    assert main(["tune", "hpobench:australian", "--llm", "off", "--trials", "3", "--db", db]) == 0
    capsys.readouterr()
    assert main(["show", "hpobench:australian", "--db", db]) == 0
    assert "hpobench-australian" in capsys.readouterr().out
    assert main(["show", "hpobench-austral", "--db", db]) == 2
    assert "did you mean 'hpobench-australian'?" in capsys.readouterr().err
    out = tmp_path / "plots"
    assert main(["report", "hpobench:australian", "--db", db, "--out", str(out)]) == 0
    made = sorted(p.name for p in out.iterdir())
    assert "hpobench-australian-timeline.png" in made and "hpobench-australian-history.png" in made
    assert all(p.startswith("hpobench-australian-") for p in made)
    assert str(out / "hpobench-australian-timeline.png") in capsys.readouterr().out


def test_the_live_display_shows_each_running_trial_and_what_the_session_waits_on(tmp_path):
    """Read the rendered display, not the clock: while trial 0 runs it shows its number, worker,
    time and configuration; once it landed, that the agent is deciding."""
    import io

    from rich.console import Console

    from asap.cli.render import RichProgress
    from asap.tools.ledger.store import Ledger
    from asap.tools.workloads import resolve
    wl = resolve("hpobench:australian")
    study = Ledger(tmp_path / "l.db").create_study("live", wl.space, metric=wl.metric,
                                                   direction=wl.direction)
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    display = RichProgress(console)
    display.on_session_start(study, 3, "json")
    config = {"alpha": 1e-4, "batch_size": 32, "depth": 2, "learning_rate_init": 1e-3,
              "width": 128}
    tid = study.start_trial(config, tool="optuna:tpe")
    display.on_trial_start(study, 0, config, "optuna:tpe")

    def shown() -> str:
        probe = Console(file=io.StringIO(), width=200)
        probe.print(display.view(study))
        return probe.file.getvalue()
    display.on_phase(study, "training")
    text = shown()
    assert "#0" in text and "width=128" in text and "training for" in text
    assert "waiting on training" in text
    study.finish_trial(tid, status="complete", metrics={wl.metric: 0.8})
    display.on_trial_complete(study, study.trial(tid), "optuna:tpe")
    display.on_phase(study, "tools")
    text = shown()
    assert "#0" not in text and "deciding the next trial: the tools" in text
    assert "best 0.8000" in text
    display.on_phase(study, "llm")
    assert "deciding the next trial: the LLM" in shown()
    display.on_session_end(study, False)


def test_a_bad_cost_weight_is_one_line_naming_it(tmp_path, capsys):
    from asap.agent.config import ConfigError, TuneConfig
    db = tmp_path / "w.db"
    assert main(["tune", "hpobench:australian", "--cost-weight", "nope", "--db", str(db)]) == 2
    assert "--cost-weight must be a number or cool, got 'nope'" in capsys.readouterr().err
    assert main(["tune", "hpobench:australian", "--cost-weight", "9", "--db", str(db)]) == 2
    assert "cost_weight" in capsys.readouterr().err and not db.exists()
    with pytest.raises(ConfigError, match="must be 'cool' or a number from 0 to 4"):
        TuneConfig.make(workload="hpobench:australian", cost_weight=-1)
    assert TuneConfig(workload="hpobench:australian", cost_weight="cool").cost_weight == "cool"


def test_a_design_tool_is_one_the_panel_knows(tmp_path, capsys):
    from asap.agent.config import ConfigError, TuneConfig
    db = tmp_path / "d.db"
    assert main(["tune", "hpobench:australian", "--design", "sobol", "--db", str(db)]) == 2
    assert "design: Value error, must be none or name one tool among" in capsys.readouterr().err
    assert not db.exists()
    with pytest.raises(ConfigError, match="design"):
        TuneConfig.make(workload="hpobench:australian", design="optuna:nope")
    assert TuneConfig(workload="w").design == "optuna:qmc"  # Sobol points by default
    assert TuneConfig(workload="w", design="none").design is None  # the panel alone
    assert TuneConfig(workload="w", design=None).design is None


def test_tune_reads_the_endpoint_from_the_environment_like_the_graphs(tmp_path, monkeypatch,
                                                                        capsys):
    """ASAP_BASE_URL / ASAP_MODEL name the LLM when no --base-url does (the README's table)."""
    from fakes import FakeOpenAI
    fake = FakeOpenAI().start()
    try:
        monkeypatch.setenv("ASAP_BASE_URL", fake.base_url)
        monkeypatch.setenv("ASAP_MODEL", "fake")
        assert main(["tune", "hpobench:australian", "--trials", "4", "--clock", "virtual",
                     "--db", str(tmp_path / "e.db"), "--json"]) == 0
    finally:
        fake.stop()
    assert json.loads(capsys.readouterr().out)["trials"] == 4
    assert sum(fake.served.values()) >= 2  # the protocol probe, then round 4's decision


def test_tune_starts_the_worker_server_before_it_imports_the_graphs(tmp_path):
    """The workload module's imports load in the fork server while the command imports the
    graphs; the session finds that server running."""
    code = f"""
import sys
sys.path.insert(0, {str(USERWL)!r})
import asap.tools.trials.workers as workers
seen, start = [], workers.fork_server
def fork_server(preload=workers.Preload()):
    seen.append((sorted(preload.modules), "asap.graphs.session" in sys.modules))
    return start(preload)
workers.fork_server = fork_server
from asap.cli.main import main
rc = main(["tune", "faulty:ok", "--space", {str(USERWL / "space.yaml")!r}, "--llm", "off",
           "--trials", "1", "--db", "d.db"])
print(rc, seen[0])
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 (['faulty'], False)"


def test_the_command_exits_with_mains_code_after_freezing_the_heap(monkeypatch):
    """``asap`` (the console script, ``python -m asap.cli``) is ``run``: main's exit code, with
    the objects frozen so the interpreter's teardown does not collect over them."""
    import gc

    from asap.cli import main as cli
    frozen = []
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 3 and frozen == [True]
    done = subprocess.run([sys.executable, "-m", "asap.cli", "show", "nope", "--db",
                           "/nonexistent/dir/x.db"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error" in done.stderr
