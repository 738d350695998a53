"""The chat: a scripted person and a scripted chat model, real tuning, real checkpointer."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from fakes import ScriptedModel
from langchain_core.messages import AIMessage
from rich.console import Console

from asap.agent.chat import chat, threads
from asap.agent.ledger import Ledger
from asap.graphs.chat import ChatRuntime

HERE = Path(__file__).parent


def chat_script(messages, kwargs):
    """The chat's model: request extraction, intent, tuning decisions, the tuning probe."""
    kind = kwargs.get("response_format", {}).get("json_schema", {}).get("name")
    text = messages[-1].content
    if kind == "request":
        got = {}
        if "australian" in text:
            got |= {"workload": "hpobench:australian", "params": ["learning rate", "width"]}
        if "trials" in text:
            got["trials"] = 3
        return AIMessage(json.dumps(got))
    if kind == "intent":
        for word, intent in [("top", {"action": "top", "n": 5}),
                             ("why", {"action": "why", "tool": "tpe"}),
                             ("time", {"action": "time"}),
                             ("more", {"action": "extend", "trials": 2}),
                             ("narrow", {"action": "narrow", "param": "width", "low": 32,
                                         "high": 64})]:
            if word in text:
                return AIMessage(json.dumps(intent))
        return AIMessage('{"action": "other"}')
    if kind == "decision":
        return AIMessage('{"action": "train", "choice": "A"}')
    return AIMessage("Ready.")  # the tuning's protocol probe, and free answers


def session(db: Path, turns: list[str], thread: str = "t1") -> str:
    out = io.StringIO()
    model = ScriptedModel(chat_script)
    rt = ChatRuntime(llm=model, db=str(db), tune_llm=model, workdir=db.parent)
    said = iter(turns)

    def ask(prompt: str) -> str:
        try:
            return next(said)
        except StopIteration:
            raise EOFError from None
    chat(rt, thread=thread, console=Console(file=out, width=300), ask=ask)
    return out.getvalue()


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
    assert "optuna:tpe: 3 trials" in out and "Wall-clock" in out
    assert len(study.trials()) == 5  # extended by 2 after a second confirmation
    assert "Nothing started" in out  # the narrowed plan was refused: no compute spent
    assert not Ledger(db).has_study("chat-hpobench-australian-2")


def test_a_thread_waits_at_the_confirmation_across_processes(tmp_path):
    db = tmp_path / "x.db"
    run = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from pathlib import Path
        from test_chat import session
        print(session(Path({str(db)!r}), sys.argv[1:]))
    """)
    first = subprocess.run([sys.executable, "-c", run, "tune hpobench:australian, 3 trials"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Proceed?" in first.stdout and not Ledger(db).has_study("chat-hpobench-australian-1")
    second = subprocess.run([sys.executable, "-c", run, "yes"], capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("Proceed?") == 1  # the pending question, shown on resume
    assert "Done." in second.stdout
    assert len(Ledger(db).open_study("chat-hpobench-australian-1").trials()) == 3
    listed = threads(str(db))
    assert [t["thread"] for t in listed] == ["t1"] and listed[0]["study"] is not None
    cli = subprocess.run([sys.executable, "-m", "asap.agent.cli", "chat", "--list", "--db",
                          str(db)], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "t1" in cli.stdout


def test_plain_requests_and_questions_are_read_without_the_llm():
    from asap.graphs.chat import parse_intent, parse_request
    assert parse_request("tune the learning rate and width of my model in train.py:fit for "
                         "accuracy, 20 minutes") == {
        "workload": "train:fit", "minutes": 20.0, "params": ["learning rate", "width"],
        "metric": "accuracy"}
    assert parse_request("hpobench:kc1, 12 trials, minimize") == {
        "workload": "hpobench:kc1", "trials": 12, "direction": "minimize"}
    assert parse_request("make it good") == {}
    assert parse_intent("what were the top 3?").n == 3
    assert parse_intent("why CMA-ES?").tool == "cmaes"
    assert parse_intent("10 more trials").trials == 10
    assert parse_intent("narrow lr to 0.001..0.01").model_dump(include={"param", "low", "high"}) \
        == {"param": "lr", "low": 0.001, "high": 0.01}
    assert parse_intent("tell me a joke") is None  # the LLM's turn
