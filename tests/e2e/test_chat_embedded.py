"""The chat's questions against the real embedded model (SmolLM2 on llama.cpp): after a real
session, each is answered from the ledger and none starts anything."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from asap.agent.llm.client import chat_model
from asap.agent.llm.server import EmbeddedServer
from asap.cli.chat import chat
from asap.graphs.chat import ChatContext
from asap.tools.ledger.store import Ledger

QUESTIONS = ["why TPE?", "how much time went to the LLM?", "is width or lr more important here?",
             "what should I try next to get above 0.97?", "no", "how good is it?"]


@pytest.mark.e2e
def test_questions_on_the_embedded_model_are_answered_and_start_nothing(tmp_path):
    db = tmp_path / "c.db"
    out = io.StringIO()
    turns = iter(["tune the learning rate and width of my model on hpobench:australian, "
                  "4 trials", "yes", *QUESTIONS, "exit"])
    with EmbeddedServer(say=lambda m: None) as srv:
        ctx = ChatContext(llm=chat_model(srv.base_url, "default"), db=str(db),
                          base_url=srv.base_url, model="default", space_dir=tmp_path)
        chat(ctx, thread="e2e", console=Console(file=out, width=300),
             ask=lambda prompt: next(turns))
    text = out.getvalue()
    study = Ledger(db).open_study("chat-hpobench-australian-1")
    assert len(study.trials()) == 4 and not Ledger(db).has_study("chat-hpobench-australian-2")
    assert "Round " in text and "improved the best" in text  # why
    assert "Wall-clock" in text and "fANOVA importance over" in text
    assert "The tools' next proposals" in text and "OK, nothing started." in text
    last = text.rsplit("asap>", 1)[1].strip()
    assert last  # the model's own answer to "how good is it?", from the ledger's facts
