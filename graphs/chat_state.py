"""The chat graph's state, its input schema and its run context (the chat model and the
ledger), with the context a LangGraph server gets when a run brings none."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime, get_runtime
from typing_extensions import TypedDict  # Studio's schemas need it on Python 3.11

from asap.agent.llm.client import chat_model
from asap.tools.ledger.store import DEFAULT_DB
from asap.tools.types import Cancel


class ChatInput(TypedDict):
    """A person's turn: ``{"messages": [{"role": "user", "content": "tune digits-mlp ..."}]}``."""

    messages: Annotated[list[BaseMessage], add_messages]


class ChatState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    request: dict[str, Any]  # gathered so far
    plan: dict[str, Any] | None  # what confirm shows and tune runs
    study: str | None  # the last study tuned in this thread
    phase: Literal["gather", "ready", "go", "done"]


@dataclass(frozen=True)
class ChatContext:
    """The chat's model and where sessions go; ``tune_llm`` decides in sessions (default: the
    endpoint ``base_url``/``model``, else the embedded server). Space files go to ``space_dir``
    (default: beside the ledger).

    Only an in-process caller can hand the graph a live chat model; a context without one came
    from a server's client as JSON, and :func:`chat_context` replaces it whole with the
    operator's (:func:`env_context`): a client picks neither the ledger, nor the endpoint, nor
    the folder space files are written to."""

    llm: BaseChatModel | None = None
    db: str = DEFAULT_DB
    base_url: str | None = None
    model: str | None = None
    tune_llm: BaseChatModel | None = None
    space_dir: Path | None = None
    # Set from another thread (the terminal's Ctrl-C) to stop a running session; the terminal
    # clears it before each turn. Server runs get their own (see run_tuning_async).
    cancel: Cancel = field(default_factory=Cancel, compare=False)
    served: bool = False  # the operator's context on a server: tasks pass its ServerPolicy

    @property
    def spaces(self) -> Path:
        return self.space_dir or Path(self.db).resolve().parent


@cache
def env_context() -> ChatContext:
    """The context when a LangGraph server runs the graph without one: the LLM at
    ``ASAP_BASE_URL`` / ``ASAP_MODEL`` (nothing connects until a message arrives)."""
    base_url = os.environ.get("ASAP_BASE_URL", "http://127.0.0.1:8080/v1")
    model = os.environ.get("ASAP_MODEL", "default")
    return ChatContext(llm=chat_model(base_url, model), base_url=base_url, model=model,
                       db=os.environ.get("ASAP_DB", DEFAULT_DB), served=True)


def chat_context(runtime: Runtime[ChatContext] | None = None) -> ChatContext:
    """The run's context: the caller's, when it brings a live chat model; else the
    operator's."""
    runtime = runtime or get_runtime(ChatContext)
    ctx = runtime.context
    return ctx if isinstance(ctx, ChatContext) and ctx.llm is not None else env_context()
