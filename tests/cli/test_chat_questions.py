"""The chat answers questions and never acts on them: the sentences that were turned into
actions, verbatim, after a real session (scripted model, real tuning, real checkpointer)."""

from __future__ import annotations

import re

from chatrun import session
from fakes import chat_script
from langchain_core.messages import AIMessage

from asap.cli.chat import threads
from asap.tools.ledger.store import Ledger

SETUP = ["tune the learning rate and width of my model on hpobench:australian",
         "4 trials please", "yes"]


def _turns(out: str) -> list[str]:
    """What asap said, turn by turn (each reply starts with "asap>")."""
    return [t.strip() for t in out.split("asap>")[1:]]


def test_questions_after_a_session_are_answered_not_acted_on(tmp_path):
    db = tmp_path / "q.db"
    out = session(db, [*SETUP, "why TPE?", "how much time went to the LLM?",
                       "is width or lr more important here?",
                       "what should I try next to get above 0.97?", "no",
                       "no", "help", "what were the top 2?", "exit"])
    study = Ledger(db).open_study("chat-hpobench-australian-1")
    assert len(study.trials()) == 4  # no question ran a trial
    assert not Ledger(db).has_study("chat-hpobench-australian-2")  # nor proposed a study
    said = _turns(out)
    # The answer to "why TPE?" (the session's own turn may name optuna:tpe too).
    why = next(t for t in said if re.search(r"Round \d+ trained \S+ proposal", t))
    assert "tpe" in why and "improved the best" in why
    assert "Wall-clock" in out and "LLM with no trial running" in out
    assert re.search(r"(width|learning_rate_init) matters more than", out)
    assert "fANOVA importance over 4 complete trials" in out
    assert "The tools' next proposals, as the prior ranks them" in out
    assert "past 0.97" in out and "I can run 5 more trials" in out
    assert "5 more trials (9 in all)" in out and "Proceed?" in out  # the offer needs a yes
    offer = out.split("5 more trials (9 in all)")[1].split("Proceed?")[0]
    assert "Fixed: alpha=1e-4" in offer  # an extension shows the pins as the first plan did
    assert out.count("OK, nothing started.") == 2  # one reply to "no", whenever it comes
    assert "I cannot do that" not in out and "Nothing started. What should change" not in out
    assert "I can tune and answer questions" in out  # help
    assert "Top 2 of 4 complete trials" in out  # as many as the question asks


def test_a_question_at_the_confirmation_is_answered_and_the_plan_still_waits(tmp_path):
    db = tmp_path / "c.db"
    out = session(db, ["tune the learning rate and width of my model on hpobench:australian",
                       "3 trials please", "why tpe?", "what can you do?", "no", "exit"])
    assert "Nothing has been tuned in this conversation yet" in out
    assert out.count("Proceed?") == 3  # asked again after each answer
    assert not Ledger(db).has_study("chat-hpobench-australian-1")  # never ran


def test_a_polite_request_is_a_request_and_still_needs_a_yes(tmp_path):
    db = tmp_path / "p.db"
    out = session(db, [*SETUP, "can you run 2 more trials?", "no", "exit"])
    assert "2 more trials (6 in all)" in out and "Proceed?" in out
    assert len(Ledger(db).open_study("chat-hpobench-australian-1").trials()) == 4


def test_a_resumed_thread_recaps_where_it_stopped_and_the_list_has_dates(tmp_path):
    db = tmp_path / "r.db"
    session(db, [*SETUP, "why TPE?", "exit"], thread="r1")
    out = session(db, ["exit"], thread="r1")
    assert "Resuming thread r1" in out and "chat-hpobench-australian-1" in out
    assert "you> why TPE?" in out  # the last exchange
    [row] = threads(str(db))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", row["last"])


def _phrasing(messages, kwargs):
    """The chat's model, answering free questions as a small model does: with a number of its
    own for one question, and from the facts for another."""
    if "Facts from the ledger" in str(messages[0].content):
        if "gain" in messages[-1].content:
            return AIMessage("These changes resulted in a 1.0% increase in accuracy.")
        best = re.search(r"best val_acc, ([\d.]+)", messages[0].content).group(1)
        return AIMessage(f"The session's best val_acc was {best}.")
    return chat_script(messages, kwargs)


def test_chat_answers_come_from_the_ledger_and_an_invented_number_is_not_shown(tmp_path):
    db = tmp_path / "g.db"
    out = session(db, [*SETUP, "which of the knobs made the biggest difference to accuracy?",
                       "so what did you actually do there, in plain words",
                       "what gain did the tuning bring?", "how did it go overall?", "exit"],
                  script=_phrasing)
    said = _turns(out)[2:]  # after the plan and the session's own report
    assert "fANOVA importance over 4 complete trials" in said[1]  # not the time split
    assert said[2].startswith("I tuned learning_rate_init, width of hpobench:australian to "
                              "maximize val_acc: 4 trials (4 complete)")
    assert "Rounds decided by" in said[2] and "came from trial" in said[2]
    assert "1.0%" not in said[3].split("(a phrasing")[0]  # the invented number never stands
    assert "the ledger records, and it does not say that directly" in said[3]
    assert "Top 3 of 4 complete trials" in said[3]  # the facts instead
    best = Ledger(db).open_study("chat-hpobench-australian-1").best().value
    assert said[4] == f"The session's best val_acc was {best:.4g}."  # grounded: shown as it is
