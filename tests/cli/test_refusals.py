"""Refusals: bad flags, bad space files, files that are not ledgers, devices, read-only
ledgers, garbage endpoints and bad simulated durations are each one clear line, and nothing
half-written is left behind.
"""

import json
import subprocess
from pathlib import Path

import pytest

from asap.cli.main import main
from asap.tools.ledger.store import Ledger

USERWL = Path(__file__).parents[1] / "userwl"


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
    (["eval", "--jobs", "0", "--profile", "dev", "--db", "{tmp}/w.db"],
     "--jobs must be at least 1"),
    (["eval", "--jobs", "2", "--db", "{tmp}/w.db"], "for the virtual clock only"),
    # dev's two cells at a time stay with its virtual clock: this error is the task's
    (["eval", "--profile", "dev", "--clock", "real", "--tasks", "hpobench:mars"],
     "unknown hpobench dataset 'mars'"),
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
    (["tune", "faulty:ok", "--space", "{tmp}/deep.yaml"], "deep.yaml nests too deeply"),
    (["tune", "faulty:ok", "--space", "{tmp}/escmetric.yaml"],
     "the metric is a name without control characters"),
    (["tune", "hpobench:australian", "--seed", "4294967296"],
     "seed: Input should be less than or equal to 4294967295"),
    (["tune", "hpobench:australian", "--base-url", "http://127.0.0.1:8000/v1 extra"],
     "must be an http(s) URL with no spaces"),
    (["tune", "hpobench:australian", "--base-url", "http://me:hunter2@127.0.0.1:8000/v1"],
     "carries credentials ('http://me:***@127.0.0.1:8000/v1'); give the key in OPENAI_API_KEY"),
    (["tune", "hpobench:australian", "--optuna-storage",
      "postgresql://me:hunter2@127.0.0.1:9/optuna"], "cannot open the Optuna storage "
     "'postgresql://me:***@127.0.0.1:9/optuna'"),
    (["tune", "hpobench:australian", "--optuna-storage",  # a password inside another word
      "postgresql://admin:ostgres@127.0.0.1:19999/db"], "cannot open the Optuna storage "
     "'postgresql://admin:***@127.0.0.1:19999/db'"),
    (["tune", "optuna_tutorial:quadratic"], "optuna_tutorial:quadratic is an Optuna objective, "
     "objective(trial): run it from Python with asap.optimize(quadratic, n_trials=N)"),
])
def test_refusals_write_nothing(tmp_path, capsys, monkeypatch, args, message):
    (tmp_path / "notes.txt").write_text("not a model\n")
    (tmp_path / "nometric.yaml").write_text("params:\n  x: {type: float, low: 0, high: 1}\n")
    (tmp_path / "bomb.yaml").write_text("l0: &l0 [lol]\n" + BOMB + "\nparams: *l8\n")
    (tmp_path / "twice.yaml").write_text("metric: score\nparams:\n  x: {type: float, low: 0, "
                                         "high: 1}\n  x: {type: int, low: 0, high: 9}\n")
    (tmp_path / "wide.yaml").write_text("metric: score\nparams:\n  x: {type: float, "
                                        "low: -1e308, high: 1e308}\n")
    (tmp_path / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000)  # 200 KB, 1e5 levels
    (tmp_path / "escmetric.yaml").write_text('metric: "sc\\eore"\nparams:\n  x: {type: float, '
                                             'low: 0, high: 1}\n')
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


def test_redaction_hides_the_password_field_and_garbles_nothing_else():
    """Every occurrence of the password's text was starred: 'p***ql://admin:***@' for the
    password 'ostgres', 'F***iled to import DB ***ccess module' for 'a'."""
    from asap.tools.types import redact
    assert redact("postgresql://admin:ostgres@127.0.0.1:19999/db") == \
        "postgresql://admin:***@127.0.0.1:19999/db"
    url = "postgresql://u:a@127.0.0.1/db"
    assert redact(f"Failed to import DB access module for {url}", url) == \
        "Failed to import DB access module for postgresql://u:***@127.0.0.1/db"
    assert redact("no secret here", "sqlite:///optuna.db") == "no secret here"


@pytest.mark.parametrize("where", ["file", "proc"])
def test_a_model_cache_that_cannot_be_used_is_one_line(tmp_path, capsys, monkeypatch, where):
    """`asap llm pull` with ASAP_CACHE_DIR at a file, or under /proc: a traceback before."""
    if where == "file":
        (tmp_path / "afile").write_text("x")
        monkeypatch.setenv("ASAP_CACHE_DIR", str(tmp_path / "afile" / "models"))
    else:
        monkeypatch.setenv("ASAP_CACHE_DIR", "/proc/asap-cache")
    assert main(["llm", "pull"]) == 2
    err = capsys.readouterr().err
    assert "cannot use the model cache folder" in err and "Traceback" not in err
    assert "\n" not in err.strip()


def test_a_full_disk_is_one_line_and_the_cut_off_trial_is_failed(tmp_path, capsys,
                                                                        monkeypatch):
    """Issue 37 (13): the ledger's disk fills during a trial (SQLite's page cap stands in for
    the disk): one line, exit 2, no traceback from any thread; the trials recorded stay, and
    the resume on a disk with room marks the cut-off trial failed."""
    import threading

    from asap.tools.ledger import store as ledger_mod

    monkeypatch.chdir(USERWL)
    db = tmp_path / "full.db"
    opened = ledger_mod.Ledger._ensure_schema

    def capped(self):
        opened(self)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages + 3}")
    monkeypatch.setattr(ledger_mod.Ledger, "_ensure_schema", capped)
    raised = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    args = ["tune", "faulty:reports_many", "--space", "space.yaml", "--llm", "off",
            "--trials", "2", "--db", str(db), "--study", "full"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the ledger cannot be written" in err and "disk is full" in err, err
    assert "Traceback" not in err and raised == []
    monkeypatch.setattr(ledger_mod.Ledger, "_ensure_schema", opened)
    # The cut-off trial is failed now where the disk still takes that row, else by the resume.
    assert main([*args[:6], "--trials", "1", *args[8:]]) == 1  # 1: no trial completed
    trials = Ledger(db).open_study("full").trials()
    assert [t.status for t in trials] == ["failed"]
    assert "disk is full" in trials[0].error or "interrupted" in trials[0].error


def test_a_report_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    """Issue 37 (13): the pictures cannot be written (no space left): one line, exit 2."""
    import errno

    from matplotlib.figure import Figure

    db = tmp_path / "r.db"
    assert main(["tune", "hpobench:australian", "--llm", "off", "--trials", "2", "--clock",
                 "virtual", "--db", str(db)]) == 0
    capsys.readouterr()

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(Figure, "savefig", full)
    assert main(["report", "hpobench-australian", "--db", str(db),
                 "--out", str(tmp_path / "pics")]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
