"""Prefix-stable prompts: static text first, then an append-only round log.

Why: servers reuse the KV cache of a prompt's longest unchanged prefix (vLLM prefix caching,
llama.cpp prefix reuse); one changed byte early on invalidates everything after it. So nothing
above the log changes between rounds, the log only grows at its end, and every number is formatted
deterministically (fixed float format, space order for keys, no timestamps). ``mode="naive"``
puts a status header (round, current best) above the log, rewritten each round: the ablation.

Templates are files in ``asap.prompts`` rendered with ``string.Template.substitute``: a missing
variable is an error, never a silent blank.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from asap.agent.ledger import FINISHED, Study, Trial

PromptMode = Literal["stable", "naive"]


@cache
def template(name: str) -> string.Template:
    return string.Template(resources.files("asap.prompts").joinpath(name).read_text())


def placeholders(name: str) -> set[str]:
    """The variables a template needs (for the test that code and files agree)."""
    return {m.group("named") or m.group("braced")
            for m in template(name).pattern.finditer(template(name).template)
            if m.group("named") or m.group("braced")}


def render(name: str, **values: Any) -> str:
    return template(name).substitute(values)


def fmt(value: Any) -> str:
    """Deterministic value formatting: 4 significant digits, bare words, no locale or repr drift.

    Four digits separate every config a tool proposes in practice and cost ~3 tokens a number;
    six cost ~5 and made each round 465 tokens on digits-mlp.
    """
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, str) and value and " " not in value and value != "-":
        return value
    return json.dumps(value)


def label(i: int) -> str:
    """The label of the i-th proposal (A, B, ...): what the prompt shows and the LLM answers."""
    return chr(65 + i)


def fmt_config(config: dict[str, Any], order: list[str]) -> str:
    """A config as its values in space order, ``-`` for an inactive parameter (the prompt says)."""
    return " ".join(fmt(config[k]) if k in config else "-" for k in order)


@dataclass
class ToolRecord:
    trials: int = 0
    improvements: int = 0


def tool_records(study: Study) -> dict[str, ToolRecord]:
    """Per tool: finished trials it proposed and how many improved the best so far.

    The first complete trial counts as an improvement (over nothing).
    """
    records: dict[str, ToolRecord] = {}
    best = None
    for t in study.trials(status=FINISHED):
        rec = records.setdefault(t.tool, ToolRecord())
        rec.trials += 1
        if t.status == "complete" and study.better(t.value, best):
            rec.improvements += 1
            best = t.value
    return records


@dataclass
class PromptBuilder:
    """Builds each round's prompt; ``log`` is the append-only part, grown by :meth:`close_round`."""

    study: Study
    tools_text: str
    mode: PromptMode = "stable"
    protocol: Literal["tools", "json"] = "json"
    context: int = 24  # rounds the log carries; past it, the oldest half is compacted at once
    log: list[str] = field(default_factory=list)
    compacted: int = 0  # rounds folded into the log's summary line so far

    def static(self) -> str:
        s = self.study
        return render("system.txt", workload=s.workload or "(unnamed)", direction=s.direction,
                      metric=s.metric, space=s.space.describe(), tools=self.tools_text,
                      columns=", ".join(s.space.names),
                      answer=render(f"answer_{self.protocol}.txt").rstrip("\n"))

    def round_text(self, round_no: int, proposals: list[tuple[str, dict[str, Any]]]) -> str:
        best = self.study.best()
        records = tool_records(self.study)
        order = self.study.space.names
        return render(
            "round.txt", round=round_no,
            best="none yet" if best is None else f"{fmt(best.value)} (trial {best.number})",
            record=", ".join(f"{k} {r.trials}/{r.improvements}" for k, r in sorted(records.items()))
            or "none yet",
            proposals="\n".join(f"{label(i)} {tool}: {fmt_config(cfg, order)}"
                                for i, (tool, cfg) in enumerate(proposals)))

    def outcome_text(self, decision: str, trial: Trial | None) -> str:
        if trial is None:
            result = "not trained"
        elif trial.value is not None:
            result = f"trial {trial.number} {trial.status} {self.study.metric}={fmt(trial.value)}"
        else:
            result = f"trial {trial.number} {trial.status} ({trial.error or 'no value'})"
        return render("outcome.txt", decision=decision, result=result)

    def prompt(self, current_round: str) -> str:
        """Static text, (naive: a status header,) the log so far, then this round's block."""
        header = ""
        if self.mode == "naive":
            best = self.study.best()
            rounds = self.compacted + len(self.log) - (1 if self.compacted else 0)
            header = render("naive_header.txt", round=rounds + 1,
                            best="none yet" if best is None else fmt(best.value))
        return self.static() + header + "".join(self.log) + current_round

    def close_round(self, current_round: str, outcome: str) -> None:
        """Append the finished round to the log (the only way the log changes between steps).

        When the log passes ``context`` rounds, its oldest half becomes one summary line: a rare
        large step (every ``context // 2`` rounds) instead of a window sliding every round, which
        would change the prefix, and lose the KV cache, each time.
        """
        self.log.append(current_round + outcome)
        if len(self.log) > self.context:
            self.compact(self.context // 2)

    def compact(self, keep: int) -> None:
        """Fold all but the last ``keep`` rounds of the log into one summary line."""
        head = 1 if self.compacted else 0  # the current summary line, if any
        if len(self.log) - head <= keep:
            return
        folded = self.compacted + len(self.log) - head - keep
        self.log = [self._summary_line(folded), *(self.log[-keep:] if keep else [])]
        self.compacted = folded

    def shrink(self) -> int:
        """The prompt did not fit the server's context: halve ``context`` and compact now."""
        self.context = max(2, min(self.context, len(self.log)) // 2)
        self.compact(self.context // 2)
        return self.context

    def _summary_line(self, rounds: int) -> str:
        best = self.study.best()
        order = self.study.space.names
        return render("compacted.txt", rounds=rounds, trials=len(self.study.finished_ids()),
                      best="none" if best is None else
                      f"{fmt(best.value)} (trial {best.number}, {best.tool}: "
                      f"{fmt_config(best.config, order)})")
