"""Answers to questions about a study, computed from the ledger (the chat's source of truth).

The chat never lets the LLM invent numbers: these functions read the ledger and return text; the
LLM only decides which one a question asks for.
"""

from __future__ import annotations

from asap.agent.stats import pct, summarize, tool_records
from asap.tools.study import Study


def top(study: Study, n: int = 5) -> str:
    """The best ``n`` complete trials."""
    done = [t for t in study.trials(status="complete") if t.value is not None]
    done.sort(key=lambda t: t.value, reverse=study.direction == "maximize")
    if not done:
        return f"No trial of {study.name} has completed yet."
    rows = [f"{i + 1}. trial {t.number} ({t.tool}): {study.metric}={t.value:.4g}  "
            f"{study.space.format(t.evaluated)}" for i, t in enumerate(done[:n])]
    return f"Top {min(n, len(done))} of {len(done)} complete trials:\n" + "\n".join(rows)


def why(study: Study, tool: str | None = None) -> str:
    """Why a tool was chosen: its record (trials, improvements of the best) and the decisions
    the agent made with it; the fallbacks say when the LLM did not decide."""
    records = tool_records(study)
    if not records:
        return "No trial has finished yet, so no tool has a record."
    names = [k for k in records if tool is None or tool.lower() in k.lower()] or list(records)
    lines = [f"{k}: {r.trials} trials, {r.improvements} improved the best" for k, r in
             sorted(records.items(), key=lambda kv: -kv[1].improvements) if k in names]
    fallbacks = [e["detail"] for e in study.events("fallback")]
    note = (f" The fallback policy (best improvement record) decided {len(fallbacks)} rounds when "
            "the LLM's answer was unusable." if fallbacks else "")
    return ("Each round the tools proposed and the LLM picked one, seeing every tool's record "
            "(trials proposed, how many improved the best):\n" + "\n".join(lines) + note)


def time_split(study: Study) -> str:
    """Where the wall-clock went."""
    s = summarize(study)
    t, wall = s["time"], s["time"]["wall_s"] or 1e-9
    return (f"Wall-clock {t['wall_s']:.1f} s: training {t['train_s']:.1f} s "
            f"({t['train_s'] / wall:.0%}), LLM with no trial running {t['exposed_llm_s']:.1f} s "
            f"({t['exposed_llm_s'] / wall:.0%}), tools {t['tools_s']:.1f} s, other "
            f"{t['other_s']:.1f} s. LLM time overlapping training {t['hidden_llm_s']:.1f} s "
            f"(speculative calls {t['speculative_llm_s']:.1f} s). "
            f"{s['llm_calls']} LLM calls, {pct(s['cached_share'])} of prompt tokens from the cache.")


def best(study: Study) -> str:
    s = summarize(study)
    if s["best_value"] is None:
        return f"{study.name}: {s['trials']} trials, none complete yet."
    return (f"{study.name}: best {study.metric} {s['best_value']:.4g} (trial {s['best_trial']}, "
            f"{s['best_tool']}) after {s['trials']} trial{'' if s['trials'] == 1 else 's'}; config "
            f"{study.space.format(s['best_config'])}")
