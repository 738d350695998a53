"""Prefix-stable prompts: static text first, then an append-only round log.

Why: servers reuse the KV cache of a prompt's longest unchanged prefix (vLLM prefix caching,
llama.cpp prefix reuse); one changed byte early on invalidates everything after it. So nothing
above the log changes between rounds, the log only grows at its end, and every number is formatted
deterministically (fixed float format, space order for keys, no timestamps). ``mode="naive"``
puts a status header (round, current best) above the log, rewritten each round: the ablation.

The log is an immutable :class:`PromptLog` carried in the graph's state; :class:`PromptBuilder`
renders text from it and returns new logs, so a speculative branch extends a copy for free.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asap.agent.config import PromptMode, ProposalStyle
from asap.agent.llm.protocols import DEFAULT, PROTOCOLS, label
from asap.agent.prior.ranking import Score, brief, describe
from asap.agent.report.stats import ToolRecord, tool_records
from asap.prompts import render
from asap.tools.hpo.space import format_value
from asap.tools.ledger.study import Study
from asap.tools.types import Trial

fmt = format_value  # the prompt's value format is the space's


def short(tool: str) -> str:
    """A tool's name in the prompt: its algorithm alone ("optuna:tpe" -> "tpe"), a few tokens
    fewer in every proposal line, record and log row (the tools section says the library)."""
    return tool.rpartition(":")[2]


_SHORTEN = re.compile(r"\b\w+:(\w+)\b")  # "A (optuna:tpe)" -> "A (tpe)"


def fmt_config(config: dict[str, Any], order: list[str]) -> str:
    """A config as its values in space order, ``-`` for an inactive parameter (the prompt says)."""
    return " ".join(fmt(config[k]) if k in config else "-" for k in order)


@dataclass(frozen=True)
class PromptLog:
    """The append-only part of the prompt: closed rounds, oldest first.

    ``compacted`` counts the rows dropped so far (see :meth:`PromptBuilder.compact`).
    """

    rows: tuple[str, ...] = ()
    compacted: int = 0

    @property
    def rounds(self) -> int:
        """Rounds the log stands for, dropped ones included (one row per round, one worker)."""
        return self.compacted + len(self.rows)

    def plus(self, *rows: str) -> PromptLog:
        return PromptLog((*self.rows, *rows), self.compacted)


@dataclass(frozen=True)
class PromptBuilder:
    """Renders each round's prompt for one study; holds no state of the session."""

    study: Study
    tools_text: str
    mode: PromptMode = "stable"
    protocol: str = DEFAULT  # the decision protocol's name (asap.agent.llm.protocols)
    workers: int = 1  # trials in flight at once: above 1, rounds log a pending row first
    proposals: ProposalStyle | None = None  # None: the protocol's (brief for labels)

    @property
    def brief(self) -> bool:
        """Proposal lines without their configurations (see :meth:`round_text`)."""
        if self.proposals is not None:
            return self.proposals == "brief"
        return PROTOCOLS[self.protocol].brief

    def static(self) -> str:
        s = self.study
        parallel = render("parallel.txt", workers=self.workers) if self.workers > 1 else ""
        return render("system.txt", workload=s.workload or "(unnamed)", direction=s.direction,
                      metric=s.metric, space=s.space.describe(), tools=self.tools_text,
                      columns=", ".join(s.space.names), parallel=parallel,
                      proposal_help=render(f"proposals_{'brief' if self.brief else 'full'}.txt"
                                           ).rstrip("\n"),
                      answer=PROTOCOLS[self.protocol].answer_text())

    def round_text(self, round_no: int, proposals: list[tuple[str, dict[str, Any]]],
                   scores: Sequence[Score | None] = (), plan: int = 1) -> str:
        """The round's block: best so far, the proposals in the prior's order with each tool's
        record and what the prior predicts of each (see :mod:`asap.agent.prior.ranking`), and, when one
        decision covers ``plan`` > 1 rounds, how many.

        Brief (the JSON protocol's default) leaves the configurations out: the block is the
        part of every prompt the cache cannot hold (new each round), and with them it was ~250
        tokens against ~100 (SmolLM2's tokenizer splits numbers into digits); the LLM answers a
        label, and the log carries every configuration trained. The tools protocol copies a
        proposal's configuration into its call, so it shows them (full).
        """
        scores = list(scores) or [None] * len(proposals)
        best = self.study.best()
        best_text = "none yet" if best is None else f"{fmt(best.value)}, trial {best.number}"
        records = tool_records(self.study)
        if self.brief:
            lines = [f"{label(i)} {short(tool)} {_record(records.get(tool))}{brief(score)}"
                     for i, ((tool, _), score) in enumerate(zip(proposals, scores, strict=True))]
        else:
            order = self.study.space.names
            lines = [f"{label(i)} {short(tool)}: {fmt_config(cfg, order)}{describe(score)}"
                     for i, ((tool, cfg), score) in enumerate(zip(proposals, scores,
                                                                  strict=True))]
        if plan > 1:
            lines.append(render("plan.txt", rounds=plan).rstrip("\n"))
        if self.brief:
            return render("round_brief.txt", round=round_no, best=best_text,
                          proposals="\n".join(lines))
        return render(
            "round.txt", round=round_no, best=best_text,
            record=" ".join(f"{short(k)} {_record(r)}" for k, r in sorted(records.items()))
            or "none yet",
            proposals="\n".join(lines))

    def row(self, round_no: int, decision: str, trial: Trial) -> str:
        """A closed round as one log line: the decision, the configuration trained, its result.

        The round's other proposals and the prior's numbers are not kept: they mattered for that
        round only, and carrying them made every round ~330 tokens of log on a 7-parameter
        space (6.3k tokens by round 18, decisions 5-6 s on SmolLM2); one line is ~35.
        """
        return render("outcome.txt", round=round_no, decision=_SHORTEN.sub(r"\1", decision),
                      config=fmt_config(trial.config, self.study.space.names),
                      result=_result(trial))

    def started(self, log: PromptLog, round_no: int, decision: str, trial: Trial) -> PromptLog:
        """The log once a round's trial starts: unchanged with one worker (the round's row is
        written when it lands), a pending row with several (other rounds land meanwhile, and
        the LLM must see what is already in flight)."""
        if self.workers == 1:
            return log
        return log.plus(render("outcome.txt", round=round_no,
                               decision=_SHORTEN.sub(r"\1", decision),
                               config=fmt_config(trial.config, self.study.space.names),
                               result=f"trial {trial.number} running"))

    def landed(self, round_no: int, decision: str, trial: Trial) -> str:
        """The row a finished trial adds to the log (appended in the order trials land): its
        round's whole row with one worker, its result alone with several (its pending row above
        says the rest)."""
        if self.workers == 1:
            return self.row(round_no, decision, trial)
        return render("landed.txt", result=_result(trial))

    def prompt(self, log: PromptLog, current_round: str) -> str:
        """Static text, (naive: a status header,) the log so far, then this round's block."""
        header = ""
        if self.mode == "naive":
            best = self.study.best()
            header = render("naive_header.txt", round=log.rounds + 1,
                            best="none yet" if best is None else fmt(best.value))
        return self.static() + header + "".join(log.rows) + current_round

    def close(self, log: PromptLog, row: str, context: int) -> PromptLog:
        """The log with a finished round appended (the only way it grows between steps).

        When it passes ``context`` rounds, its oldest half leaves (:meth:`compact`): a rare
        large step (every ``context // 2`` rounds) instead of a window sliding every round, which
        would change the prefix, and lose a prefix-only KV cache (vLLM's), each time.
        """
        log = log.plus(row)
        return self.compact(log, context // 2) if len(log.rows) > context else log

    def compact(self, log: PromptLog, keep: int) -> PromptLog:
        """Keep the last ``keep`` rows of the log and the best trial's rows among the others;
        drop the rest.

        Only deletions: every row kept is byte for byte a piece of the cached prompt, so a
        server that reuses cached chunks at shifted positions (llama.cpp's ``n_cache_reuse``,
        which the embedded server turns on) reads the compacted prompt from its cache; a
        summary line in their place would be new text, and everything after it recomputed
        (measured on a 2.1k-token log compacted to 1.4k: 3.4 s cold against 0.27 s reused).
        The best trial of the dropped rows keeps its row, so the LLM still sees the best
        configuration; the block's header gives the best value. Which rows go depends on the
        dropped rows alone, so the compacted prefix is known before the trial that triggers it
        ends (:meth:`next_prefix`), for servers that can only reuse a prefix (vLLM).
        """
        if len(log.rows) <= keep:
            return log
        cut = len(log.rows) - keep
        folded = log.rows[:cut]
        best = self._best_of(folded)
        kept = tuple(row for row in folded if best is not None and best in _trials(row))
        return PromptLog((*kept, *log.rows[cut:]), log.compacted + len(folded) - len(kept))

    def next_prefix(self, log: PromptLog, context: int, always: bool = False) -> str | None:
        """When closing the next round will compact the log (or ``always``): the next prompt's
        prefix (static text, the log as that close leaves it, minus the closing round's row),
        else None. Everything in it is known now, so a warm-up call on it, sent while the trial
        trains, makes the first call after the compaction hit the cache instead of recomputing
        the whole log."""
        if len(log.rows) + 1 <= context and not always:
            return None
        placeholder = "\x00"  # stands for the closing round's row, which comes last
        compacted = self.close(log, placeholder, context)
        return self.static() + "".join(compacted.rows[:-1])

    def shrink(self, log: PromptLog, context: int) -> tuple[PromptLog, int]:
        """The prompt did not fit the server's context: halve ``context`` and compact now."""
        context = max(2, min(context, len(log.rows)) // 2)
        return self.compact(log, context // 2), context

    def _best_of(self, rows: Sequence[str]) -> int | None:
        """The number of the best finished trial the rows speak of, None when none has a value."""
        numbers = {n for row in rows for n in _trials(row)}
        best = None
        for t in self.study.trials(status=("complete",)):
            if t.number in numbers and t.value is not None and self.study.better(
                    t.value, best.value if best else None):
                best = t
        return None if best is None else best.number


_TRIAL = re.compile(r"\btrial (\d+)\b")  # as outcome.txt and landed.txt write it


def _trials(row: str) -> set[int]:
    """The trial numbers a log row speaks of (one; none for a row without a trial)."""
    return {int(m) for m in _TRIAL.findall(row)}


def _record(record: ToolRecord | None) -> str:
    """A tool's record as the prompt writes it: trials/how many improved the best value."""
    return "0/0" if record is None else f"{record.trials}/{record.improvements}"


def _result(trial: Trial) -> str:
    """A trial's result as the log writes it."""
    if trial.status == "complete" and trial.value is not None:
        return f"trial {trial.number}: {fmt(trial.value)}"
    if trial.value is not None:
        return f"trial {trial.number} {trial.status}: {fmt(trial.value)}"
    return f"trial {trial.number} {trial.status} ({_short(trial.error or 'no value')})"


def _short(text: str, limit: int = 120) -> str:
    """An error as the log carries it: one line, bounded (a workload's traceback can be huge)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
