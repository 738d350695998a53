"""Decision quality: how well a meta-optimizer picks among the proposals it is offered.

On a tabular task every proposal of every round can be looked up in the table, so each recorded
``decision`` event (the round's offers in the order shown, the choice, who decided) is scored
directly: was the pick the best offer by the table's mean, and what was its rank. Reference
pickers are scored on the very same rounds: "always A" (the first offer: the prior's pick once
it has three trials), "always TPE" (the panel's first tool, what A was before the prior), a
uniform random pick (in expectation) and the UCB1 tool bandit (from the tool record before that
round). For the LLM,
overrides (a pick other than A) are counted and judged against A counterfactually.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from asap.tools.hpo.panel import PANEL
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.types import better
from asap.tools.workloads import tabular

FIRST_TOOL = PANEL[0].key
PICKERS = ("asap", "always A", "always TPE", "bandit", "random")


@dataclass
class Picks:
    """Per method: for each picker, (picked the best offer?, rank of its pick) per round."""

    rounds: int = 0
    by: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    llm_rounds: int = 0  # rounds the LLM's own answer decided
    planned: int = 0  # rounds an earlier answer's plan decided
    overrides: int = 0
    better: int = 0
    worse: int = 0

    def share(self, picker: str) -> float | None:
        got = self.by.get(picker)
        return statistics.mean(b for b, _ in got) if got else None

    def rank(self, picker: str) -> float | None:
        got = self.by.get(picker)
        return statistics.mean(r for _, r in got) if got else None


def decision_quality(ledger: Ledger, cells: list[dict[str, Any]]) -> dict[str, Picks]:
    """Per method, the decision quality of its recorded rounds on the tabular tasks."""
    out: dict[str, Picks] = defaultdict(Picks)
    for cell in cells:
        bench, _, dataset = cell["task"].partition(":")
        if bench not in tabular.BENCHES:
            continue
        study = ledger.open_study(cell["id"])
        for event in study.events("decision"):
            _score_round(out[cell["method"]], study, event["detail"], bench, dataset)
    return dict(out)


def _score_round(picks: Picks, study: Study, d: dict[str, Any], bench: str, dataset: str) -> None:
    offers = d["offers"]
    worth = [tabular.true_mean(bench, dataset, config) for _, config in offers]
    chosen = d["choice"].split(" ", 1)[0]
    index = ord(chosen) - 65 if len(chosen) == 1 and chosen.isalpha() else None
    if index is None or index >= len(offers):
        return  # the LLM's own configuration: not one of the offers
    picks.rounds += 1
    picks.llm_rounds += d.get("by") == "llm"
    picks.planned += d.get("by") == "plan"
    ranks = [1 + sum(w > v for w in worth) for v in worth]  # 1 = the best; ties share
    best = [float(r == 1) for r in ranks]
    picks.by["asap"].append((best[index], ranks[index]))
    picks.by["always A"].append((best[0], ranks[0]))
    # Before the prior ordered the offers, "A" was always the panel's first tool (TPE).
    first = next((i for i, (tool, _) in enumerate(offers) if tool == FIRST_TOOL), 0)
    picks.by["always TPE"].append((best[first], ranks[first]))
    picks.by["random"].append((statistics.mean(best), statistics.mean(ranks)))
    b = _bandit_pick(study, d["trial"], [tool for tool, _ in offers])
    picks.by["bandit"].append((best[b], ranks[b]))
    if index != 0 and d.get("by") == "llm":
        picks.overrides += 1
        picks.better += worth[index] > worth[0]
        picks.worse += worth[index] < worth[0]


def _bandit_pick(study: Study, trial_number: int, tools: list[str]) -> int:
    """UCB1 on each tool's improvement rate, from the trials before ``trial_number``."""
    pulls: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    best = None
    for t in study.trials(status=("complete", "failed", "pruned")):
        if t.number >= trial_number:
            continue
        pulls[t.tool][0] += 1
        if t.status == "complete" and better(study.direction, t.value, best):
            pulls[t.tool][1] += 1
            best = t.value
    n = max(1, sum(p for p, _ in pulls.values()))

    def ucb(i: int) -> float:
        p, wins = pulls[tools[i]]
        return math.inf if not p else wins / p + math.sqrt(2 * math.log(n) / p)
    return max(range(len(tools)), key=lambda i: (ucb(i), -i))
