"""What the CLI's rich renderables print, read from a real ledger: the running trials, stored
text that must not act as markup or terminal escapes, and the trials table."""

from __future__ import annotations

from rich.console import Console

from asap.cli.render import Running, live_info, safe, trials_table


def _text(renderable) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_running_shows_each_trial_in_flight_and_what_the_session_waits_on(ledger, toy_space):
    study = ledger.create_study("r", toy_space, metric="loss", direction="minimize")
    assert "deciding the next trial" in _text(Running(study))
    config = toy_space.validate({"x": 1.5, "lr": 0.01, "n_layers": 1, "optimizer": "adam"})
    study.start_trial(config, tool="optuna:tpe", meta={"worker": 1})
    shown = _text(Running(study))
    assert "#0" in shown and "x=1.5" in shown and "optimizer=adam" in shown
    assert shown.split("#0")[1].split()[0] == "1"  # its worker


def test_stored_text_prints_as_written_never_as_markup(ledger, toy_space):
    assert safe("[/bold] \x1b[2J") == "\\[/bold] ?[2J"
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    config = toy_space.validate({"x": 0.5, "lr": 0.1, "n_layers": 2, "optimizer": "adam"})
    tid = study.start_trial(config, tool="[red]evil")
    study.finish_trial(tid, status="failed", metrics={}, error="boom [/bold]")
    table = _text(trials_table(study))
    assert "[red]evil" in table and "boom [/bold]" in table and "failed" in table
    assert live_info(study, "optuna:tpe") == "no complete trial | last optuna:tpe"
