"""From a finished grid to numbers: per-cell curves and metrics, per method x task summaries.

A run is scored by the worth of what it would return, its best observed trial: on tabular tasks
the table's MEAN over its training seeds for that configuration (a trial sees one noisy draw),
and normalized regret uses the best and worst mean over the whole grid; for real-training tasks,
whose optimum is unknown, the observed values and the best and worst any cell of the grid
reached stand in (empirical regret, said so in the report). The
time-to-target target is the median final quality of the reference method (the serial naive LLM
loop) on that task.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asap.agent.report.stats import exposed_llm
from asap.evals.metrics import (
    Curve,
    area_under_regret,
    bootstrap_ci,
    incumbent_curve,
    normalized_regret,
    ranks,
    regret_curve,
    time_to_target,
    value_at,
)
from asap.tools.ledger.store import Ledger


@dataclass
class CellResult:
    id: str
    task: str
    method: str
    seed: int
    maximize: bool
    time_budget_s: float
    wall_s: float
    trials: int
    by_time: Curve  # the incumbent's worth against seconds since the cell began
    by_trial: Curve  # the incumbent's worth against the trial count
    optimum: float = 0.0
    worst: float = 0.0
    exact_optimum: bool = False
    target: float | None = None
    trials_budget: int | None = None
    clock: str = "real"  # the clock the run's times are on
    ends: list[float] = field(default_factory=list)  # each finished trial's end, in order
    exposed: list[tuple[float, float]] = field(default_factory=list)  # LLM calls, no training

    def regret_at_trials(self, n: int) -> float:
        """Normalized regret of the incumbent after ``n`` trials (after all of them, if the
        run had fewer)."""
        return normalized_regret(value_at(self.by_trial, n), self.optimum, self.worst)

    def exposed_within(self, t: float) -> float:
        """Seconds of the run's first ``t`` in which an LLM call ran and no trial trained: the
        agent's LLM time charged on the critical path."""
        return sum(max(0.0, min(e, t) - s) for s, e in self.exposed if s < t)

    @property
    def truncated(self) -> bool:
        """The run ended before its trial budget (the time cap, or the LLM's stop)."""
        return self.trials_budget is not None and self.trials < self.trials_budget

    @property
    def best(self) -> float | None:
        return self.by_time[-1][1] if self.by_time else None

    @property
    def regret(self) -> float:
        return normalized_regret(self.best, self.optimum, self.worst)

    def regret_at(self, t: float) -> float:
        return normalized_regret(value_at(self.by_time, t), self.optimum, self.worst)

    @property
    def auc(self) -> float:
        return area_under_regret(regret_curve(self.by_time, self.optimum, self.worst),
                                 self.time_budget_s)

    @property
    def time_to_target(self) -> float | None:
        return None if self.target is None else time_to_target(self.by_time, self.target,
                                                                self.maximize)

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "task": self.task, "method": self.method, "seed": self.seed,
                "trials": self.trials, "trials_budget": self.trials_budget, "wall_s": round(self.wall_s, 3), "best": self.best,
                "regret": round(self.regret, 6), "auc": round(self.auc, 6),
                "time_to_target_s": self.time_to_target, "target": self.target,
                "optimum": self.optimum, "exact_optimum": self.exact_optimum}


def collect(ledger: Ledger, reference: str = "llm-naive") -> list[CellResult]:
    """Every finished cell of the ledger's grid with its curves, optimum and target."""
    out: list[CellResult] = []
    for cell in ledger.db["eval_cells"].rows_where("status = 'done'", order_by="started"):
        study = ledger.open_study(cell["id"])
        done = [t for t in study.trials() if t.status != "running"]
        maximize, worth = study.direction == "maximize", worth_of(cell["task"])
        sessions = study.events("session")
        # Times are measured from the run's start on its own clock (a virtual clock's too).
        start = min((e["detail"]["start"] for e in sessions), default=cell["started"])
        end = max((e["detail"]["end"] for e in sessions), default=cell["ended"])
        out.append(CellResult(
            cell["id"], cell["task"], cell["method"], cell["seed"], maximize,
            cell["time_budget_s"], end - start, len(done),
            incumbent_curve([(t.ended_at - start, t.value, t.config) for t in done],
                            maximize, worth),
            incumbent_curve([(i + 1, t.value, t.config) for i, t in enumerate(done)],
                            maximize, worth), trials_budget=cell["trials_budget"],
            clock=sessions[0]["detail"].get("clock", "real") if sessions else "real",
            ends=[t.ended_at - start for t in done],
            exposed=[(s - start, e - start) for s, e in exposed_llm(study)]))
    _set_optima(out)
    _set_targets(out, reference)
    return out


def worth_of(task: str) -> Callable[[dict[str, Any], float], float]:
    """How a returned configuration is scored: the table's mean over its seeds on a tabular
    task (the value a trial saw is one noisy draw), the observed value on real training."""
    from asap.tools.workloads import tabular
    bench, _, dataset = task.partition(":")
    if bench in tabular.BENCHES:
        return lambda config, observed: tabular.true_mean(bench, dataset, config)
    return lambda config, observed: observed


def _set_optima(cells: list[CellResult]) -> None:
    from asap.tools.workloads import tabular
    by_task: dict[str, list[CellResult]] = defaultdict(list)
    for c in cells:
        by_task[c.task].append(c)
    for task, group in by_task.items():
        bench, _, dataset = task.partition(":")
        if bench in tabular.BENCHES:
            best, worst = tabular.extremes(bench, dataset)
            exact = True
        else:  # real training: the best and worst any cell reached
            seen = [v for c in group for _, v in c.by_trial] or [0.0]
            best, worst = (max(seen), min(seen)) if group[0].maximize else (min(seen), max(seen))
            exact = False
        for c in group:
            c.optimum, c.worst, c.exact_optimum = best, worst, exact


def _set_targets(cells: list[CellResult], reference: str) -> None:
    finals: dict[str, list[float]] = defaultdict(list)
    for c in cells:
        if c.method == reference and c.best is not None:
            finals[c.task].append(c.best)
    for c in cells:
        c.target = statistics.median(finals[c.task]) if finals.get(c.task) else None


def summary(cells: list[CellResult]) -> dict[str, Any]:
    """Per method x task: regret at the budget (mean and 95 % bootstrap CI over seeds), AUC,
    time-to-target, rank; per method: average rank across tasks."""
    groups: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
    for c in cells:
        groups[(c.method, c.task)].append(c)
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for key, group in groups.items():
        mean, lo, hi = bootstrap_ci([c.regret for c in group])
        reached = [c.time_to_target for c in group if c.time_to_target is not None]
        table[key] = {"regret": mean, "ci": (lo, hi), "auc": statistics.mean(c.auc for c in group),
                      "ttt": statistics.median(reached) if reached else None,
                      "reached": len(reached), "seeds": len(group),
                      "truncated": sum(c.truncated for c in group),
                      "trials": statistics.mean(c.trials for c in group),
                      "wall_s": statistics.mean(c.wall_s for c in group)}
    tasks = sorted({t for _, t in groups})
    methods = sorted({m for m, _ in groups})
    for task in tasks:
        here = {m: table[(m, task)]["regret"] for m in methods if (m, task) in table}
        for m, r in ranks(here).items():
            table[(m, task)]["rank"] = r
    avg_rank = {m: statistics.mean(table[(m, t)]["rank"] for t in tasks if (m, t) in table)
                for m in methods}
    return {"tasks": tasks, "methods": sorted(methods, key=lambda m: avg_rank[m]),
            "table": table, "avg_rank": avg_rank}


def rank_over_time(cells: list[CellResult], times: list[float]) -> dict[str, list[float]]:
    """Average rank across tasks of each method's mean regret, at each of ``times``."""
    groups: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
    for c in cells:
        groups[(c.method, c.task)].append(c)
    tasks = sorted({t for _, t in groups})
    methods = sorted({m for m, _ in groups})
    out: dict[str, list[float]] = {m: [] for m in methods}
    for t in times:
        per_task = defaultdict(list)
        for task in tasks:
            here = {m: statistics.mean(c.regret_at(t) for c in groups[(m, task)])
                    for m in methods if (m, task) in groups}
            for m, r in ranks(here).items():
                per_task[m].append(r)
        for m in methods:
            out[m].append(statistics.mean(per_task[m]))
    return out
