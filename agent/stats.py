"""What a study amounts to, in numbers: per-tool record, LLM numbers, the wall-clock split.

Everything is computed from the ledger alone, so ``asap show`` on an old study, ``asap tune
--json``, ``asap report``, the chat's answers and the live display agree. Presentation lives
elsewhere (the CLI's tables, :mod:`asap.agent.timeline`'s PNG).

Exposed LLM time is time when an LLM call runs and no trial trains (the trainer idles, waiting
for a decision); hidden LLM time is critical-path LLM time that overlapped training.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from asap.tools.ledger import Study
from asap.tools.types import FINISHED


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


def pct(x: float | None, spec: str = ".0%") -> str:
    """A share as a percentage, ``-`` when unknown."""
    return "-" if x is None else format(x, spec)




def cached_share(calls: list[dict[str, Any]]) -> float | None:
    """Share of prompt tokens the server took from its KV cache, over calls that report it."""
    known = [(c["prompt_tokens"], c["cached_tokens"]) for c in calls
             if c["prompt_tokens"] and c["cached_tokens"] is not None]
    return sum(c for _, c in known) / sum(p for p, _ in known) if known else None


def summarize(study: Study) -> dict[str, Any]:
    """The study's summary as plain JSON-serializable data.

    The time split adds up to the wall-clock: training, LLM time while no trial trained
    (exposed), tools, other. LLM time hidden behind training is reported beside it.
    """
    trials = study.trials()
    best = study.best()
    calls = study.timings("llm_call")
    train_s = sum(t["duration"] for t in study.timings("train"))
    d = decompose(study)
    wall = d["wall_s"]
    tools_s = sum(t["duration"] for t in study.timings("tool_call"))
    protocol = next((e["detail"]["chosen"] for e in reversed(study.events("protocol"))), None)
    return {
        "study": study.name, "workload": study.workload, "metric": study.metric,
        "direction": study.direction, "trials": len(trials),
        "complete": sum(t.status == "complete" for t in trials),
        "failed": sum(t.status == "failed" for t in trials),
        "pruned": sum(t.status == "pruned" for t in trials),
        "best_value": best.value if best else None, "best_trial": best.number if best else None,
        "best_tool": best.tool if best else None, "best_config": best.evaluated if best else None,
        "per_tool": {k: {"trials": r.trials, "improvements": r.improvements}
                     for k, r in sorted(tool_records(study).items())},
        "protocol": protocol, "llm_calls": len(calls),
        "llm_failed_calls": sum(bool(c["detail"].get("failed")) for c in calls),
        "llm_median_s": statistics.median(c["duration"] for c in calls) if calls else None,
        "cached_share": cached_share(calls),
        "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in calls),
        "retries": len(study.events("guard_retry")),
        "reminders": len(study.events("guard_reminder")),
        "fallbacks": len(study.events("fallback")),
        "llm_errors": len(study.events("llm_error")),
        "stopped_by_llm": bool(study.events("stop")),
        "accept_rate": d["accept_rate"],
        "time": {"wall_s": wall, "train_s": train_s, "llm_s": d["llm_s"],
                 "exposed_llm_s": d["exposed_llm_s"], "hidden_llm_s": d["hidden_llm_s"],
                 "speculative_llm_s": d["speculative_llm_s"], "tools_s": tools_s,
                 "other_s": max(0.0, wall - train_s - d["exposed_llm_s"] - tools_s)
                 if wall else None},
    }


Interval = tuple[float, float]


def merge(intervals: list[Interval]) -> list[Interval]:
    """Union of intervals, sorted and non-overlapping."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def overlap(a: Interval, busy: list[Interval]) -> float:
    """Seconds of ``a`` covered by the merged intervals ``busy``."""
    return sum(max(0.0, min(a[1], e) - max(a[0], s)) for s, e in busy)


def wall_clock(study: Study, rows: list[dict[str, Any]]) -> float:
    """Seconds the study was worked on: the union of its sessions and of every timed row.

    A session killed before it logged itself (SIGKILL, a crash) still spent its rows' time, so
    summing the logged sessions alone undercounts, and shares of it passed 100 %.
    """
    spans = [(e["detail"]["start"], e["detail"]["end"]) for e in study.events("session")]
    spans += [(r["start"], r["end"]) for r in rows]
    return sum(e - s for s, e in merge(spans))


def decompose(study: Study) -> dict[str, Any]:
    """Exposed and hidden LLM time, speculation's accept rate and waste, cache share, knobs."""
    trains = study.timings("train")
    calls = study.timings("llm_call")
    critical = [c for c in calls if not c["detail"].get("speculative")]
    busy = merge([(t["start"], t["end"]) for t in trains])
    llm_s = sum(c["duration"] for c in critical)
    # Exposed: some LLM call (critical, or a speculative one the join waits for) runs and no
    # trial trains. Hidden: critical-path LLM time that overlapped training.
    waiting = merge([(c["start"], c["end"]) for c in calls])
    exposed = sum(e - s - overlap((s, e), busy) for s, e in waiting)
    hidden = sum(overlap((c["start"], c["end"]), busy) for c in critical)
    judged = study.events("speculation")
    wall = wall_clock(study, trains + calls)
    return {
        "wall_s": wall,
        "train_s": sum(t["duration"] for t in trains),
        "llm_s": llm_s,
        "exposed_llm_s": exposed,
        "hidden_llm_s": hidden,
        "exposed_share": exposed / wall if wall else None,
        "speculative_llm_s": sum(c["duration"] for c in calls if c["detail"].get("speculative")),
        "wasted_s": sum(t["duration"] for t in study.timings("speculation")
                        if t["detail"].get("wasted")),
        "accept_rate": (sum(bool(e["detail"].get("accepted")) for e in judged) / len(judged)
                        if judged else None),
        "cached_share": cached_share(calls),
        "knobs": [{"at": e["at"], **e["detail"]["after"]} for e in study.events("selftune")],
    }
