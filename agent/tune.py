"""``asap tune``: open or resume a study, start the LLM, run the tuning graph, summarize."""

from __future__ import annotations

import contextlib
import statistics
from typing import Any

import openai
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from asap.agent.ledger import Ledger
from asap.agent.prompt import PromptBuilder
from asap.graphs.tuning import PANEL, Runtime, build_tuning_graph
from asap.tools.portfolio import Portfolio
from asap.tools.pruning import Pruner
from asap.tools.trainer import Trainer
from asap.tools.workloads import resolve

TOOLS_TEXT = "\n".join(f"- {lib}:{alg}" for lib, alg in PANEL) + \
    "\n- llm (your own configuration, action 'own')"


def tune(workload: str, *, trials: int, db: str, study_name: str | None = None,
         space_file: str | None = None, time_budget_s: float | None = None,
         base_url: str | None = None, model: str | None = None, api_key: str | None = None,
         time_scale: float = 0.0, prompt_mode: str = "stable", console: Console | None = None,
         ) -> dict[str, Any]:
    """Run (or resume) a tuning session; returns the summary dict that ``--json`` prints."""
    console = console or Console(stderr=True)
    ledger = Ledger(db)  # raises LedgerError naming a missing directory
    wl = resolve(workload, space_file=space_file, time_scale=time_scale)
    name = study_name or workload.replace(":", "-")
    if ledger.has_study(name):
        study = ledger.open_study(name)
        lost = study.fail_running("interrupted: the tuning process stopped during this trial")
        console.print(f"resuming study '{name}' ({len(study.finished_ids())} finished trials"
                      + (f", {len(lost)} interrupted marked failed" if lost else "") + ")")
    else:
        study = ledger.create_study(name, wl.space, metric=wl.metric, direction=wl.direction,
                                    workload=workload)
    with contextlib.ExitStack() as stack:
        if base_url is None:
            from asap.agent.server import EmbeddedServer
            srv = stack.enter_context(EmbeddedServer(model, say=console.print))
            base_url, model = srv.base_url, "default"
        client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=2,
                               timeout=120)
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console))
        task = progress.add_task("tuning", total=trials, completed=len(study.finished_ids()), info="")

        def on_trial(trial, tool):
            best = study.best()
            calls = study.timings("llm_call")
            info = (f"best {best.value:.4f} | last {tool} | llm {calls[-1]['duration']:.1f}s"
                    if best and calls else f"last {tool}")
            progress.update(task, completed=len(study.finished_ids()), info=info)

        rt = Runtime(study, Portfolio(study), Trainer(study, wl, pruner=Pruner(study, "none")),
                     PromptBuilder(study, TOOLS_TEXT, mode=prompt_mode), client, model or "default",
                     trials, time_budget_s, on_trial=on_trial)
        if len(study.finished_ids()) < trials:
            build_tuning_graph(rt).invoke({}, {"recursion_limit": 4 * trials + 20})
    return summary(study)


def summary(study) -> dict[str, Any]:
    best = study.best()
    calls = study.timings("llm_call")
    train = study.timings("train")
    known = [(c["prompt_tokens"], c["cached_tokens"]) for c in calls
             if c["prompt_tokens"] and c["cached_tokens"] is not None]
    trials = study.trials()
    per_tool: dict[str, int] = {}
    for t in trials:
        per_tool[t.tool] = per_tool.get(t.tool, 0) + 1
    return {
        "study": study.name, "metric": study.metric, "direction": study.direction,
        "trials": len(trials), "complete": sum(t.status == "complete" for t in trials),
        "best_value": best.value if best else None, "best_config": best.config if best else None,
        "per_tool": per_tool,
        "llm_calls": len(calls),
        "llm_median_s": statistics.median(c["duration"] for c in calls) if calls else None,
        "llm_total_s": sum(c["duration"] for c in calls),
        "train_total_s": sum(t["duration"] for t in train),
        "cached_share": sum(c for _, c in known) / sum(p for p, _ in known) if known else None,
        "retries": len(study.events("guard_retry")), "fallbacks": len(study.events("fallback")),
    }
