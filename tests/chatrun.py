"""A scripted person talking to ``asap chat``: the helper the chat tests share."""

from __future__ import annotations

import io
from pathlib import Path

from fakes import ScriptedModel, chat_script
from rich.console import Console

from asap.cli.chat import chat
from asap.graphs.chat import ChatContext


def session(db: Path, turns: list[str], thread: str = "t1", script=chat_script) -> str:
    out = io.StringIO()
    model = ScriptedModel(script)
    ctx = ChatContext(llm=model, db=str(db), tune_llm=model, space_dir=db.parent)
    said = iter(turns)

    def ask(prompt: str) -> str:
        try:
            return next(said)
        except StopIteration:
            raise EOFError from None
    chat(ctx, thread=thread, console=Console(file=out, width=300), ask=ask)
    return out.getvalue()
