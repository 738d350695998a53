"""One tuning task in, one typed result out: the entry point for agent eval harnesses.

A harness scores agents (or LLMs) on tuning tasks: it calls :func:`run_task` with the agent's chat
model (any LangChain ``BaseChatModel``) or an endpoint, and compares the :class:`TaskResult`s.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from asap.agent.config import TuneConfig
from asap.graphs.session import TuneCallback, tune


class TaskResult(BaseModel):
    """What a harness scores: quality reached, what it cost, and how often the LLM failed."""

    study: str
    workload: str
    metric: str
    direction: str
    best_value: float | None = Field(description="best objective value; None if no trial completed")
    best_config: dict[str, Any] | None
    best_tool: str | None = Field(description="the tool that proposed the best configuration")
    trials: int
    complete: int
    failed: int
    wall_clock_s: float
    llm_share: float | None = Field(description="exposed LLM time / wall-clock (trainer idle)")
    llm_calls: int
    cached_share: float | None
    accept_rate: float | None = Field(description="speculative rounds accepted, if any judged")
    fallbacks: int = Field(description="rounds the fallback policy decided (LLM failed)")
    retries: int
    llm_errors: int

    @classmethod
    def from_summary(cls, s: dict[str, Any]) -> TaskResult:
        wall = s["time"]["wall_s"]
        return cls(**{k: s[k] for k in (
            "study", "workload", "metric", "direction", "best_value", "best_config", "best_tool",
            "trials", "complete", "failed", "llm_calls", "cached_share", "accept_rate",
            "fallbacks", "retries", "llm_errors")},
            wall_clock_s=wall, llm_share=s["time"]["exposed_llm_s"] / wall if wall else None)


def run_task(workload: str, *, llm: BaseChatModel | None = None, trials: int = 20,
             callbacks: tuple[TuneCallback, ...] = (), **settings: Any) -> TaskResult:
    """Run one tuning task (a fresh or resumed study) and return its :class:`TaskResult`.

    ``settings`` are :class:`~asap.agent.config.TuneConfig` fields (``db``, ``study``,
    ``time_budget_s``, ``base_url``, ``model``, ``speculation``, ...); a bad one raises
    :class:`~asap.agent.config.ConfigError` naming it. With ``llm`` that model decides.
    """
    cfg = TuneConfig.make(workload=workload, trials=trials, **settings)
    return TaskResult.from_summary(tune(cfg, llm=llm, callbacks=callbacks))
