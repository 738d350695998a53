"""The chat: a scripted person and a scripted chat model, real tuning, real checkpointer."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from chatrun import session
from fakes import chat_script
from langchain_core.messages import AIMessage

from asap.cli.chat import threads
from asap.tools.ledger.store import Ledger

HERE = Path(__file__).parent


def test_request_to_confirmed_space_to_tuning_to_answers(tmp_path):
    db = tmp_path / "c.db"
    out = session(db, ["tune the learning rate and width of my model on hpobench:australian",
                       "3 trials please", "yes", "what were the top 5?", "why tpe?",
                       "how much time went to the LLM?", "2 more trials", "yes",
                       "narrow the width to 32..64", "no", "exit"])
    assert "What budget" in out  # it asked for what was missing
    assert "Proceed?" in out and "learning_rate_init" in out and "Fixed:" in out
    study = Ledger(db).open_study("chat-hpobench-australian-1")
    free = [p.name for p in study.space.params if not (
        getattr(p, "choices", None) and len(p.choices) == 1)]
    assert free == ["learning_rate_init", "width"]  # the other parameters were pinned
    assert "trial 2 complete" in out and "Done." in out
    assert "Top 3 of 3 complete trials" in out  # answered from the ledger
    assert re.search(r"(optuna|nevergrad):\w+: [1-3] trials", out) and "Wall-clock" in out
    assert "2 more trials (5 in all)" in out  # not "5 trials", which reads as five more
    assert len(study.trials()) == 5  # extended by 2 after a second confirmation
    assert "nothing started" in out  # the narrowed plan was refused: no compute spent
    assert not Ledger(db).has_study("chat-hpobench-australian-2")


def test_a_thread_waits_at_the_confirmation_across_processes(tmp_path):
    db = tmp_path / "x.db"
    run = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
        from pathlib import Path
        from test_chat import session
        print(session(Path({str(db)!r}), sys.argv[1:]))
    """)
    first = subprocess.run([sys.executable, "-c", run, "tune hpobench:australian, 3 trials"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Proceed?" in first.stdout and not Ledger(db).has_study("chat-hpobench-australian-1")
    assert not list(tmp_path.glob("*.space.yaml"))  # nothing is written before the yes
    second = subprocess.run([sys.executable, "-c", run, "yes"], capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("Proceed?") == 1  # the pending question, shown on resume
    assert "Done." in second.stdout
    assert [p.name for p in tmp_path.glob("*.space.yaml")] == [
        "chat-hpobench-australian-1.space.yaml"]  # after the yes, where the caller said
    assert len(Ledger(db).open_study("chat-hpobench-australian-1").trials()) == 3
    listed = threads(str(db))
    assert [t["thread"] for t in listed] == ["t1"] and listed[0]["study"] is not None
    cli = subprocess.run([sys.executable, "-m", "asap.cli", "chat", "--list", "--db",
                          str(db)], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "t1" in cli.stdout
    assert "Deserializing unregistered type" not in cli.stderr  # only plain state is saved


def test_a_reply_at_the_confirmation_changes_the_plan(tmp_path):
    db = tmp_path / "r.db"
    out = session(db, ["tune hpobench:australian, 3 trials", "no, 2 trials", "yes",
                       "make it better", "no, just 1 more", "yes", "try adam", "no", "exit"])
    assert out.count("nothing started") == 1  # only the last, plain no: the others changed it
    assert "australian-1), 2 trials, over" in out  # "no, 2 trials" changed the budget
    assert "10 more trials (12 in all)" in out  # "make it better": more trials, not the top 1
    assert "1 more trial (3 in all)" in out
    assert "no parameter of the space has the choice 'adam'" in out
    assert "OK, nothing started. Ask me about the study" in out  # a plain no: one reply
    study = Ledger(db).open_study("chat-hpobench-australian-1")
    assert len(study.trials()) == 3
    assert not Ledger(db).has_study("chat-hpobench-australian-2")
    row = next(line for line in out.splitlines() if "best val_acc" in line)
    assert "config alpha=" in row and "{" not in row  # the space's format, no Python repr


def test_an_invented_field_is_dropped_and_asked_for(tmp_path):
    """SmolLM2 copied the extraction prompt's example into space_file; every later turn then
    failed on it. An unsupported field is never kept."""
    def inventive(messages, kwargs):
        if kwargs.get("response_format", {}).get("json_schema", {}).get("name") == "request":
            return AIMessage('{"workload": "train:fit", "space_file": "train.py:fit"}')
        return chat_script(messages, kwargs)
    out = session(tmp_path / "i.db", ["tune hpobench:australian", "4 trials", "no", "exit"],
                  script=inventive)
    assert "train.py:fit" not in out and "What budget" in out
    assert "I will tune hpobench:australian" in out and "4 trials" in out


def test_a_range_edit_changes_that_range_and_keeps_the_rest_tuned(tmp_path):
    db = tmp_path / "e.db"
    out = session(db, ["tune hpobench:australian, 2 trials",
                       "can we keep the learning rate between 0.001 and 0.01 instead",
                       "and the width from 32 to 256, still tuning all the others", "yes",
                       "exit"])
    plans = out.split("Proceed?")
    assert len(plans) == 4  # the first plan, two revisions, then the yes
    assert "learning_rate_init: float in [0.001, 0.01] log" in plans[1]
    assert "width: int in [32, 256]" in plans[2] and "[0.001, 0.01]" in plans[2]
    assert "Fixed:" not in out  # no parameter was pinned by naming one to give its range
    study = Ledger(db).open_study("chat-hpobench-australian-1")
    assert [p.name for p in study.space.params] == ["alpha", "batch_size", "depth",
                                                     "learning_rate_init", "width"]
    lr = study.space["learning_rate_init"]
    assert (lr.low, lr.high) == (0.001, 0.01)
    assert all(0.001 <= t.config["learning_rate_init"] <= 0.01 for t in study.trials())


def test_a_budget_in_the_first_message_is_kept(tmp_path):
    out = session(tmp_path / "b.db", [
        "I'd like to find good settings for the digits-cnn model, maybe 4 runs", "no", "exit"])
    assert "What budget" not in out
    assert "(study chat-digits-cnn-1), 4 trials, over" in out


def test_a_range_outside_the_workloads_limits_is_refused_and_asked_again(tmp_path):
    out = session(tmp_path / "o.db", ["tune hpobench:australian with the width between 2 and "
                                      "9999, 2 trials", "width between 32 and 64", "no", "exit"])
    refused, replanned = out.split("What should I use instead?")
    assert "the new range of 'width' must lie inside [16, 1024]" in refused
    assert "Proceed?" not in refused  # nothing planned on a range the workload cannot take
    assert "width: int in [32, 64]" in replanned and "2 trials" in replanned


def test_a_line_shows_while_the_model_thinks(tmp_path):
    import io

    from rich.console import Console

    from asap.cli.chat import THINKING, _render

    out = io.StringIO()

    def turn():  # the graph's stream: nothing for a while (the model thinks), then the reply
        yield "updates", {"respond": {"messages": [AIMessage("here is the answer")]}}

    _render(turn(), Console(file=out, force_terminal=True, width=120))
    assert THINKING in out.getvalue().split("here is the answer")[0]
    assert "asap>" in out.getvalue() and "here is the answer" in out.getvalue()
