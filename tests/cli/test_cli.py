"""The command line, in-process through ``main([...])``: every bad input is one clear line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asap.agent import model
from asap.cli.main import main
from asap.tools.ledger import Ledger

USERWL = Path(__file__).parents[1] / "userwl"


def test_show_prints_trials(tmp_path, toy_space, capsys):
    from asap.tools.ledger import Ledger
    study = Ledger(tmp_path / "l.db").create_study("demo", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="optuna:tpe")
    study.finish_trial(tid, status="complete", metrics={"loss": 0.25})
    assert main(["show", "demo", "--db", str(tmp_path / "l.db")]) == 0
    out = capsys.readouterr().out
    assert "optuna:tpe" in out and "best loss = 0.25 (trial 0, optuna:tpe)" in out
    assert main(["show", "nope", "--db", str(tmp_path / "l.db")]) == 2
    assert main(["show", "demo", "--db", str(tmp_path / "absent.db")]) == 2


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


@pytest.mark.parametrize("args, message", [
    (["tune", "nope"], "unknown workload 'nope'"),
    (["tune", "digits-mlp", "--db", "{tmp}/no/x.db"], "does not exist"),
    (["tune", "digits-mlp", "--trials", "0"], "trials: Input should be greater than or equal to 1"),
    (["tune", "digits-mlp", "--time-budget", "-3"], "time_budget_s: Input should be greater than 0"),
    (["tune", "hpobench:australian", "--time-scale", "-1"], "time_scale"),
    (["tune", "digits-mlp", "--depth", "0"], "depth: Input should be greater than or equal to 1"),
    (["tune", "digits-mlp", "--trial-timeout", "0"], "trial_timeout_s: Input should be greater than 0"),
    (["tune", "digits-mlp", "--depth", "deep"], "--depth must be an integer or auto"),
    (["eval", "--methods", "tpe,nope"], "unknown method(s) ['nope']"),
    (["eval", "--tasks", "hpobench:mars"], "unknown hpobench dataset 'mars'"),
    (["tune", "digits-mlp", "--space", "{tmp}/none.yaml"], "none.yaml"),
    (["tune", "hpobench:australian", "--workers", "0", "--db", "{tmp}/w.db"],
     "workers: Input should be greater than or equal to 1"),
    (["tune", "hpobench:australian", "--gpus-per-trial", "1", "--db", "{tmp}/w.db"],
     "--gpus-per-trial 1 asks for GPUs, and this machine has none"),
    (["eval", "--workers", "0", "--db", "{tmp}/w.db"], "--workers must be at least 1"),
    (["tune", "hpobench:australian", "--backend", "ray", "--ray-address", "127.0.0.1:1",
      "--db", "{tmp}/w.db"], "the Ray cluster at 127.0.0.1:1 does not answer"),
    (["tune", "hpobench:australian", "--ray-address", "127.0.0.1:1", "--db", "{tmp}/w.db"],
     "ray_address: Value error, is only read with backend='ray'"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    out = capsys.readouterr()
    assert message in out.out + out.err
    assert not list(tmp_path.glob("*.db"))  # nothing written


@pytest.mark.parametrize("space, message", [
    ({"x": {"type": "quantum", "low": 0, "high": 1}}, "quantum"),
    ({"x": {"type": "float", "low": 2.0, "high": 1.0}}, "low"),
    ({"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log"),
    ({"a": {"type": "int", "low": 0, "high": 3, "when": {"parent": "b", "ge": 1}},
      "b": {"type": "int", "low": 0, "high": 3, "when": {"parent": "a", "ge": 1}}}, "cycle"),
])
def test_an_invalid_space_file_is_one_clear_line_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                                    space, message):
    path = tmp_path / "space.yaml"
    path.write_text(json.dumps({"metric": "score", "params": space}))
    db = tmp_path / "none.db"
    monkeypatch.chdir(USERWL)
    assert main(["tune", "faulty:ok", "--space", str(path), "--db", str(db)]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


BOMB = "\n".join([f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)])


@pytest.mark.parametrize("args, message", [
    (["tune", "nosuchmodule:fit"], "cannot import module 'nosuchmodule'"),
    (["tune", "hpobench:australian", "--base-url", "localhost:8000"], "http(s) URL"),
    (["tune", "hpobench:australian", "--base-url", "http://127.0.0.1:9/v1", "--trials", "2"],
     "nothing answers at http://127.0.0.1:9/v1"),
    (["tune", "hpobench:australian", "--model", "{tmp}/none.gguf"], "does not exist"),
    (["tune", "hpobench:australian", "--model", "{tmp}/notes.txt"], "is not a GGUF model file"),
    (["tune", "hpobench:australian", "--time-scale", "inf"], "finite number"),
    (["tune", "hpobench:australian", "--tau", "nan"], "tau: Input should be a finite number"),
    (["tune", "hpobench:australian", "--study", "../../evil"], "is not a study name"),
    (["tune", "faulty:ok", "--space", "{tmp}/bomb.yaml"], "through its aliases"),
    (["tune", "faulty:ok", "--space", "{tmp}/nometric.yaml"], "add a 'metric:' line to the space file"),
    (["tune", "digits-mlp", "--clock", "virtual"], "needs each trial's simulated duration"),
    (["tune", "faulty:ok", "--space", "space.yaml", "--clock", "virtual"],
     "name that metric in the space file (duration: train_time)"),
    (["tune", "hpobench:australian", "--clock", "sundial"], "clock: Input should be 'real' or"),
    (["tune", "hpobench:australian", "--clock", "virtual", "--time-scale", "0.1"],
     "sleeps not at all"),
    (["eval", "--clock", "virtual", "--tasks", "digits-mlp", "--methods", "tpe"],
     "needs each trial's simulated duration"),
    (["eval", "--clock", "sundial", "--methods", "tpe"], "unknown clock 'sundial'"),
    (["tune", "faulty:ok", "--space", "{tmp}/twice.yaml"], "names 'x' twice (line 4)"),
    (["tune", "faulty:ok", "--space", "{tmp}/wide.yaml"], "too wide (high - low overflows)"),
    (["tune", "hpobench:australian", "--seed", "4294967296"],
     "seed: Input should be less than or equal to 4294967295"),
    (["tune", "hpobench:australian", "--base-url", "http://127.0.0.1:8000/v1 extra"],
     "must be an http(s) URL with no spaces"),
    (["tune", "hpobench:australian", "--base-url", "http://me:hunter2@127.0.0.1:8000/v1"],
     "carries credentials ('http://me:***@127.0.0.1:8000/v1'); give the key in OPENAI_API_KEY"),
    (["tune", "hpobench:australian", "--optuna-storage",
      "postgresql://me:hunter2@127.0.0.1:9/optuna"], "cannot open the Optuna storage "
     "'postgresql://me:***@127.0.0.1:9/optuna'"),
])
def test_refusals_write_nothing(tmp_path, capsys, monkeypatch, args, message):
    (tmp_path / "notes.txt").write_text("not a model\n")
    (tmp_path / "nometric.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    (tmp_path / "bomb.yaml").write_text("l0: &l0 [lol]\n" + BOMB + "\nparams: *l8\n")
    (tmp_path / "twice.yaml").write_text("metric: score\nparams:\n  x: {type: float, low: 0, "
                                         "high: 1}\n  x: {type: int, low: 0, high: 9}\n")
    (tmp_path / "wide.yaml").write_text("metric: score\nparams:\n  x: {type: float, "
                                        "low: -1e308, high: 1e308}\n")
    monkeypatch.chdir(USERWL)
    db = tmp_path / "x.db"
    assert main([*(a.replace("{tmp}", str(tmp_path)) for a in args), "--db", str(db)]) == 2
    out = capsys.readouterr()
    assert message in out.err and out.out == ""  # errors on stderr; stdout is for results
    assert "\n" not in out.err.strip()  # one line, not wrapped at 80 columns
    assert "hunter2" not in out.err  # a password in a URL is never echoed
    assert not db.exists()  # validated before the ledger is created


def _other_app(path):
    import sqlite3
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE trials (id INTEGER, payload TEXT)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(bytes(range(256)) * 16), "not an asap ledger"),
    (_other_app, "another application's SQLite database (tables: trials)"),
])
@pytest.mark.parametrize("command", [["tune", "hpobench:australian", "--trials", "1"],
                                     ["show", "s"], ["report", "s"]])
def test_a_file_that_is_not_an_asap_ledger_is_refused_unchanged(tmp_path, capsys, make, message,
                                                                command):
    db = tmp_path / "x.db"
    make(db)
    before = db.read_bytes() if db.is_file() else None
    assert main([*command, "--db", str(db)]) == 2
    assert message in capsys.readouterr().err
    assert (db.read_bytes() if db.is_file() else None) == before
    assert not (tmp_path / "x.db-wal").exists()


def test_a_garbage_endpoint_is_named_before_anything_is_written(tmp_path, capsys):
    from fakes import FakeOpenAI
    server = FakeOpenAI()
    server.models = b"<html><body>502 Bad Gateway</body></html>"
    server.start()
    try:
        db = tmp_path / "x.db"
        assert main(["tune", "hpobench:australian", "--base-url", server.base_url,
                     "--db", str(db)]) == 2
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert f"{server.base_url} answered GET /models with '<html><body>502" in err
    assert not db.exists()


@pytest.mark.parametrize("function, message", [
    ("negative", "returned a simulated duration train_time=-1.0; it must be a finite number"),
    ("infinite", "returned a simulated duration train_time=inf"),
    ("silent", "returned no 'train_time' metric"),
])
def test_a_bad_simulated_duration_ends_the_session_with_one_line(tmp_path, capsys, monkeypatch,
                                                                 function, message):
    """The virtual clock cannot price such a trial: exit 2, and a new study is not kept."""
    from fakes import FakeOpenAI
    server = FakeOpenAI().start()
    monkeypatch.chdir(USERWL)
    db = tmp_path / "x.db"
    try:
        code = main(["tune", f"simulated:{function}", "--space", "simulated.yaml", "--clock",
                     "virtual", "--trials", "3", "--base-url", server.base_url, "--db", str(db),
                     "--decide", "json"])
    finally:
        server.stop()
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0]  # the display aside
    assert Ledger(db).study_names() == []  # nothing of the refused session stays


@pytest.mark.parametrize("device", ["/dev/full", "/dev/null"])
def test_a_device_is_refused_as_a_ledger_and_nothing_is_left_beside_it(capsys, device):
    for command in (["tune", "hpobench:australian"], ["show", "s"], ["studies"]):
        assert main([*command, "--db", device]) == 2
        assert "is not a regular file" in capsys.readouterr().err
    assert not Path(f"{device}-journal").exists() and not Path(f"{device}-wal").exists()


def test_stored_text_prints_as_written_never_as_markup_or_terminal_escapes(tmp_path, capsys,
                                                                           toy_space):
    db = tmp_path / "l.db"
    study = Ledger(db).create_study("demo", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
                            tool="optuna:tpe")
    study.finish_trial(tid, status="failed",
                       error="ValueError: bad [/bold] \x1b]0;owned\x07\x1b[2J end")
    assert main(["show", "demo", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "[/bold]" in out and "\x1b]0;" not in out and "\x1b[2J" not in out and "end" in out


def _read_only(on: bool, *paths) -> None:
    """Make ``paths`` unwritable (or writable again): immutable for root, whom permission bits
    do not stop; read-only permission bits for anyone else."""
    import os
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], check=True)
    else:
        for p in paths:
            p.chmod((0o555 if p.is_dir() else 0o444) if on else 0o755)


def test_an_immutable_ledger_is_read_but_never_tuned_into(tmp_path, capsys, toy_space):
    """A ledger that cannot be written: show and studies read it as it is (in a folder that
    cannot be written too); tune refuses it in one line before any LLM is reached."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "l.db"
    study = Ledger(db).create_study("demo", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}, tool="t")
    study.finish_trial(tid, status="complete", metrics={"loss": 0.25})
    study.ledger.close()
    _read_only(True, db, folder)
    try:
        before = sorted(p.name for p in folder.iterdir())
        assert main(["tune", "hpobench:australian", "--db", str(db),
                     "--base-url", "http://127.0.0.1:9/v1"]) == 2
        err = capsys.readouterr().err
        assert "is read-only here" in err and "nothing answers" not in err
        assert main(["show", "demo", "--db", str(db)]) == 0
        assert "best loss = 0.25" in capsys.readouterr().out
        assert main(["studies", "--db", str(db)]) == 0
        assert "demo" in capsys.readouterr().out
        assert sorted(p.name for p in folder.iterdir()) == before
    finally:
        _read_only(False, db, folder)


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
    from asap.tools.ledger import Ledger
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
    text = shown()
    assert "#0" in text and "width=128" in text and "training for" in text
    study.finish_trial(tid, status="complete", metrics={wl.metric: 0.8})
    display.on_trial_complete(study, study.trial(tid), "optuna:tpe")
    text = shown()
    assert "#0" not in text and "deciding the next trial" in text and "best 0.8000" in text
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
