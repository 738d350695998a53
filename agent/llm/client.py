"""LLM calls on any OpenAI-compatible endpoint: two decision protocols, timed into the ledger.

The model is a LangChain chat model (``ChatOpenAI`` in the product, a scripted fake in unit tests).
Two protocols reach the same typed tools:

- ``tools``: native OpenAI tool calls (vLLM with a tool-call parser, models whose chat template
  knows tools). Servers differ in the ``tool_choice`` values they accept, so :class:`ToolCaller`
  tries ``required``, then ``auto``, then none, and keeps the first one the server takes.
- ``json``: the request carries a JSON schema as ``response_format`` and the server constrains
  decoding to it (llama.cpp grammars, vLLM guided decoding), so even a 135M model answers with a
  parseable decision. SmolLM2 under llama.cpp answers tool requests with plain text, so the
  embedded default needs this one.

Each call logs latency and prompt / cached / completion tokens; a ``cached_tokens`` the server does
not report stays unknown (NULL), never zero.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import PrivateAttr

from asap.agent.llm.deadline import DeadlineExceeded, Interrupted, within
from asap.tools.ledger.study import Study

TOOL_CHOICES: tuple[str | None, ...] = ("required", "auto", None)
# Status codes with which servers refuse a tool_choice value: 400/422 (vLLM, OpenAI), 500
# (llama-cpp-python on "required"), 501 (not implemented).
REFUSALS = (400, 422, 500, 501)


def is_context_overflow(exc: Exception) -> bool:
    """The server refused the request because the prompt does not fit its context window.

    llama.cpp: "exceeds the available context size"; vLLM: "maximum context length".
    """
    return isinstance(exc, openai_error("BadRequestError")) and "context" in str(exc).lower()


def openai_error(name: str) -> type[Exception]:
    """openai's error class ``name``, importing openai when an ``except`` needs it (an
    ``except`` clause is evaluated only when an exception reaches it), not with every graph."""
    import openai

    return getattr(openai, name)


class EmptyAnswer(RuntimeError):
    """The server closed a streamed answer without sending any of it."""


class MalformedAnswer(RuntimeError):
    """A 200 answer the client could not read (no choices, not an answer object, not UTF-8)."""


ATTEMPTS = 3  # the client's first try and its two retries: a call's deadline covers all three
BACKOFF_S = 4.0  # and the client's waits between them (0.5 s, then 1 s, with jitter)


def deadline_of(model: Runnable) -> float | None:
    """A call's total deadline: every attempt of the client's timeout (``ChatOpenAI``'s
    ``request_timeout``, found through bindings) and the waits between them, so that a server
    that is only slow still meets the client's own timeout first; None for a model without one
    (a fake)."""
    while model is not None:
        timeout = getattr(model, "request_timeout", None)
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            return ATTEMPTS * float(timeout) + BACKOFF_S
        model = getattr(model, "bound", None)
    return None


# What a chat call raises on a failed or malformed response: the transport's errors (openai's,
# which langchain-openai re-raises under its own subclasses), a body that is not JSON, a stream
# with no answer, and an answer that does not parse (raised by the call alone, see
# :func:`timed_invoke`). A bug in asap's own code (a KeyError, a TypeError) is not among them:
# it surfaces as a bug instead of being logged as an LLM error and silently falling back.
# A function, not a constant: openai is imported when a call fails (:func:`openai_error`).
@functools.cache
def llm_errors() -> tuple[type[Exception], ...]:
    """The errors of a failed or malformed LLM call (see above)."""
    return (openai_error("OpenAIError"), json.JSONDecodeError, EmptyAnswer, MalformedAnswer,
            DeadlineExceeded)


# What the client's parsing of a 200 body raises when the body is not an answer: an empty
# ``choices`` (IndexError), none at all (TypeError, KeyError, AttributeError), bytes that are
# not UTF-8 (UnicodeDecodeError, a ValueError).
_UNREADABLE = (IndexError, TypeError, KeyError, AttributeError, ValueError)


def chat_model(base_url: str, model: str, *, api_key: str | None = None, max_tokens: int = 300,
               timeout_s: float = 120.0, temperature: float = 0.0,
               seed: int | None = None) -> BaseChatModel:
    """``ChatOpenAI`` for one endpoint: greedy (by default), bounded answers, the client's own
    retries; made at the first call (:class:`LazyChatModel`)."""
    return LazyChatModel(request_timeout=timeout_s, settings={
        "base_url": base_url, "model": model,
        "api_key": api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
        "temperature": temperature, "seed": seed, "max_tokens": max_tokens, "max_retries": 2,
        "timeout": timeout_s,
        "stream_usage": True})  # streamed (cancellable) calls report tokens too


class LazyChatModel(BaseChatModel):
    """A ``ChatOpenAI`` made when it is first called, not when the session starts: importing
    langchain-openai and openai is a large share of a new process's time to its first trial
    (docs/evaluation.md), and a session whose calls never pay (trials of a second beside a
    local model) never calls.
    Every call, streamed or not, and ``bind_tools`` go to that ``ChatOpenAI``."""

    settings: dict[str, Any]
    request_timeout: float  # what :func:`deadline_of` reads, before the client exists
    _real: BaseChatModel | None = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "openai-chat"

    def real(self) -> BaseChatModel:
        """The ``ChatOpenAI``, made on the first call."""
        with self._lock:
            if self._real is None:
                from langchain_openai import ChatOpenAI
                self._real = ChatOpenAI(**self.settings)
            return self._real

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return self.real()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        yield from self.real()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        return self.real().bind_tools(tools, **kwargs)


def json_model(llm: BaseChatModel, schema: dict[str, Any], name: str = "decision",
               grammar: str | None = None) -> Runnable:
    """``llm`` constrained to ``schema`` through ``response_format`` (the JSON protocol), or to
    the equivalent llama.cpp ``grammar`` when one is given (exact: no code fence, no free
    whitespace for the model to spend tokens on)."""
    if grammar is not None:
        return llm.bind(extra_body={"grammar": grammar})
    return llm.bind(response_format={"type": "json_schema", "json_schema": {
        "name": name, "schema": schema, "strict": True}})


def usage_of(message: AIMessage) -> tuple[int | None, int | None, int | None]:
    """(prompt, cached, completion) tokens as the server reported them; None where it did not."""
    raw = (message.response_metadata or {}).get("token_usage")
    if isinstance(raw, dict):
        details = raw.get("prompt_tokens_details") or {}
        return raw.get("prompt_tokens"), details.get("cached_tokens"), raw.get("completion_tokens")
    meta = message.usage_metadata
    if meta:
        return (meta.get("input_tokens"), (meta.get("input_token_details") or {}).get("cache_read"),
                meta.get("output_tokens"))
    return None, None, None


class Cancelled(RuntimeError):
    """A cancellable call was cancelled before its answer was complete."""


def _streamed(model: Runnable, messages: list[BaseMessage], cancel: threading.Event) -> AIMessage:
    """Stream the answer so that ``cancel`` can cut it off: closing the stream closes the HTTP
    connection, and llama.cpp / vLLM stop generating for a closed connection."""
    answer = None
    try:
        for chunk in model.stream(messages):
            if cancel.is_set():
                raise Cancelled("cancelled")
            answer = chunk if answer is None else answer + chunk
    except AssertionError as exc:  # the SDK's event-stream parser, on a body that is not one
        raise MalformedAnswer("the server answered a streamed request with something that is "
                              f"not a stream of server-sent events ({exc})") from exc
    if answer is None:
        raise EmptyAnswer("the server streamed no answer")
    return AIMessage(content=answer.content, tool_calls=answer.tool_calls,
                     invalid_tool_calls=answer.invalid_tool_calls,
                     response_metadata=answer.response_metadata,
                     usage_metadata=answer.usage_metadata)


def timed_invoke(model: Runnable, messages: Sequence[BaseMessage], *, study: Study | None,
                 protocol: str, trial_number: int | None = None,
                 cancel: threading.Event | None = None, **detail: Any) -> AIMessage:
    """One chat call, logged as an ``llm_call`` timing row with its token counts.

    With ``cancel``, the answer is streamed and :class:`Cancelled` is raised once the event is
    set; the row then has ``cancelled`` in its detail and unknown token counts.
    """
    now = study.clock.now if study is not None else time.time
    start = now()
    try:
        try:
            stop = cancel or threading.Event()  # set at the deadline: a stream stops reading
            try:
                message = within(deadline_of(model), lambda: (
                    model.invoke(list(messages)) if cancel is None
                    else _streamed(model, list(messages), stop)))
            except DeadlineExceeded:
                stop.set()
                raise
            except Interrupted as exc:  # the session was cancelled meanwhile
                stop.set()
                raise Cancelled(str(exc)) from None
        except json.JSONDecodeError:
            raise
        except _UNREADABLE as exc:  # raised while reading the server's answer, nothing else
            raise MalformedAnswer(f"the server's answer could not be read: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    except Cancelled:
        if study is not None:
            study.log_timing("llm_call", start, now(), trial_number=trial_number,
                             protocol=protocol, cancelled=True, **detail)
        raise
    except llm_errors() as exc:  # a failed call took its time too: it counts, marked failed
        if study is not None:
            study.log_timing("llm_call", start, now(), trial_number=trial_number,
                             protocol=protocol, failed=f"{type(exc).__name__}: {exc}"[:200],
                             **detail)
        raise
    end = now()
    if study is not None:
        prompt, cached, completion = usage_of(message)
        study.log_timing("llm_call", start, end, trial_number=trial_number, prompt_tokens=prompt,
                         cached_tokens=cached, completion_tokens=completion, protocol=protocol,
                         **detail)
    return message


class ToolCaller:
    """``llm`` bound to tools, with the first ``tool_choice`` value the server accepts.

    Why: vLLM refuses ``auto`` without ``--enable-auto-tool-choice``, llama-cpp-python answers
    ``required`` with HTTP 500, some gateways take only ``auto``. A refusal moves on to the next
    value (logged once as a ``tool_choice`` event) instead of breaking the session.
    """

    def __init__(self, llm: BaseChatModel, tools: Sequence[BaseTool], study: Study | None = None,
                 ) -> None:
        self.llm, self.tools, self.study = llm, list(tools), study
        self.index = 0

    @property
    def tool_choice(self) -> str | None:
        return TOOL_CHOICES[self.index]

    def bound(self) -> Runnable:
        """The model bound to the tools with the current ``tool_choice``: what every call sends
        (the tool definitions are part of the prompt, so a cache warm-up sends them too)."""
        choice = self.tool_choice
        return (self.llm.bind_tools(self.tools, tool_choice=choice) if choice
                else self.llm.bind_tools(self.tools))

    def invoke(self, messages: Sequence[BaseMessage], cancel: threading.Event | None = None,
               **detail: Any) -> AIMessage:
        while True:
            choice = self.tool_choice
            try:
                return timed_invoke(self.bound(), messages, study=self.study, protocol="tools",
                                    cancel=cancel, tool_choice=choice, **detail)
            except openai_error("APIStatusError") as exc:
                last = self.index == len(TOOL_CHOICES) - 1
                if exc.status_code not in REFUSALS or last or is_context_overflow(exc):
                    raise
                self.index += 1
                if self.study is not None:
                    self.study.log_event("tool_choice", refused=choice, next=self.tool_choice,
                                         status=exc.status_code, reason=str(exc)[:200])
