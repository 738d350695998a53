"""The graph's LLM calls: a round's decision request and the KV-cache warm-up.

Both go through the session's decision protocol (:mod:`asap.agent.llm.protocols`); the circuit
breaker hears of every call's outcome here, so that a dead endpoint stops being asked.
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from asap.agent.llm.client import EmptyAnswer, is_context_overflow, llm_errors, timed_invoke
from asap.graphs.context import TuneContext


def ask(ctx: TuneContext, messages: list[BaseMessage], n_labels: int, detail: dict[str, Any],
        cancel: threading.Event | None = None) -> BaseMessage:
    """One decision request in the session's protocol, timed into the ledger."""
    assert ctx.decider is not None, "no LLM in this session: the fallback decides"
    try:
        answer = ctx.decider.request(messages, n_labels, cancel=cancel,
                                     trial_number=len(ctx.study.trials()), **detail)
    except llm_errors() as exc:
        if not (is_context_overflow(exc) or isinstance(exc, EmptyAnswer)):
            ctx.breaker.failure(type(exc).__name__)  # (those two: the endpoint itself works)
        raise
    ctx.breaker.success()
    return answer


def warm_up(ctx: TuneContext, prefix: str, round_no: int) -> None:
    """Send ``prefix`` (the next prompt's start) for one token, so that the server holds it in
    its KV cache when the real call comes: the first call after a compaction, or after rounds a
    plan decided without a call, then recomputes only its newest rows. Off the critical path
    (it runs while a trial trains); it feeds no decision and, failing, nothing but its row."""
    assert ctx.decider is not None
    try:
        timed_invoke(ctx.decider.warm_model().bind(max_tokens=1), [HumanMessage(prefix)],
                     study=ctx.study, protocol=ctx.decider.name, trial_number=len(ctx.study.trials()), warmup=True,
                     round=round_no)
    except llm_errors():
        pass  # a warm-up that failed costs the real call its cache hit, nothing else
