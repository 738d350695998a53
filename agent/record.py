"""The LLM's record against the prior: how often it departed from the prior's pick, and what
its departures earned.

Why: every LLM call costs wall-clock, and an answer that takes the prior's pick ("A") changes
nothing the prior would not have done alone. The record is what lets the self-tuner ask less
often while the LLM keeps agreeing (one answer covers more rounds: :mod:`asap.agent.selftune`)
and what the summary, ``--json`` and ``asap report`` tell a person ("the LLM departed from the
prior in k of n decisions").

Read from the ledger's ``decision`` events (each round: the offers in the prior's order with
its scores, the choice, who decided) and the trials they trained. A departure *paid* when its
trial's value beat the prior's prediction for the prior's own pick (the counterfactual the prior
offered); it *improved* when its trial set a new best.
"""

from __future__ import annotations

from dataclasses import dataclass

from asap.tools.ledger.study import Study
from asap.tools.types import better


@dataclass(frozen=True)
class LLMRecord:
    """The LLM's own decisions on rounds the prior had scored."""

    decisions: int = 0  # rounds the LLM's answer decided (not a plan, not the fallback)
    departed: int = 0  # ... where it picked other than the prior's pick (A)
    paid: int = 0  # departures whose trial beat the prior's prediction for A
    improved: int = 0  # departures whose trial set a new best
    streak: int = 0  # the latest decisions in a row that agreed with the prior
    last_paid: bool = False  # the newest decision was a departure that paid

    def sentence(self) -> str:
        """One line for people: "the LLM departed from the prior in k of n decisions (j
        improved the best)"."""
        return (f"the LLM departed from the prior in {self.departed} of {self.decisions} "
                f"decisions ({self.improved} improved the best)")

    def as_dict(self) -> dict[str, int]:
        return {"decisions": self.decisions, "departed": self.departed, "paid": self.paid,
                "improved": self.improved}


def llm_record(study: Study) -> LLMRecord:
    """The record of the LLM's decisions in ``study`` so far (their trials finished)."""
    trials = {t.number: t for t in study.trials()}
    best: float | None = None
    bests: dict[int, float | None] = {}  # the best value before each trial, in trial order
    for number in sorted(trials):
        bests[number] = best
        t = trials[number]
        if t.status == "complete" and t.value is not None and better(study.direction, t.value,
                                                                      best):
            best = t.value
    decisions = departed = paid = improved = streak = 0
    last_paid = False
    for event in study.events("decision"):
        d = event["detail"]
        scores = d.get("scores") or [None]
        trial = trials.get(d.get("trial"))
        if d.get("by") != "llm" or scores[0] is None or trial is None:
            continue
        decisions += 1
        if d.get("choice", "").startswith("A "):
            streak, last_paid = streak + 1, False
            continue
        departed, streak = departed + 1, 0
        value = trial.value if trial.status == "complete" else None
        last_paid = value is not None and better(study.direction, value, scores[0][0])
        paid += last_paid
        improved += value is not None and better(study.direction, value, bests[trial.number])
    return LLMRecord(decisions, departed, paid, improved, streak, last_paid)
