"""What a study amounts to, in numbers: per-tool record, LLM numbers, the wall-clock split.

Everything is computed from the ledger alone, so ``asap show`` on an old study, ``asap tune
--json``, ``asap report``, the chat's answers and the live display agree. Presentation lives
elsewhere (the CLI's tables, :mod:`asap.agent.report.timeline`'s PNG).

The wall-clock is split into parts that add up to it exactly: training (a trial running), exposed
LLM (an LLM call running and no trial: the trainer idles, waiting for a decision), tools (a tool
running and neither of those) and other (none of these: start-up, ledger writes, waiting). Beside
the split, the LLM's seconds per kind of call: critical-path and speculative calls, the LLM time
hidden behind training (any call overlapping a trial), and wasted speculation (the speculative
calls' seconds inside speculations that were discarded).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from asap.agent.cores import MEASURED, PACED_BY_TRAINING, busy, filling
from asap.agent.record import llm_record
from asap.tools.ledger.study import Study
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


CALL_KINDS = ("critical", "speculative", "warm-up")


def call_kind(row: dict[str, Any]) -> str:
    """An LLM call's kind: a decision the session waits for (critical), one asked while a trial
    trains (speculative: on a predicted result, or a plan's next decision asked ahead, marked
    ``ahead``), or a one-token call that warms the cache (warm-up)."""
    if row["detail"].get("warmup"):
        return "warm-up"
    return "speculative" if row["detail"].get("speculative") else "critical"


def answered(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls that got an answer: a cancelled or failed call says nothing about latency or
    the cache."""
    return [c for c in calls if not (c["detail"].get("cancelled") or c["detail"].get("failed"))]


def decision_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answered calls that decided a round (critical or speculative; no warm-ups)."""
    return [c for c in answered(calls) if call_kind(c) != "warm-up"]


def by_kind(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind of call: how many, latency (median, p90), prompt tokens (median), the cached
    share of prompt tokens, completion tokens (median); calls that completed."""
    out: dict[str, dict[str, Any]] = {}
    for kind in CALL_KINDS:
        rows = [c for c in answered(calls) if call_kind(c) == kind]
        if not rows:
            continue
        lat = sorted(c["duration"] for c in rows)
        tokens = [c["prompt_tokens"] for c in rows if c["prompt_tokens"] is not None]
        done = [c["completion_tokens"] for c in rows if c.get("completion_tokens") is not None]
        out[kind] = {"calls": len(rows), "median_s": statistics.median(lat),
                     "p90_s": lat[min(len(lat) - 1, int(0.9 * len(lat)))],
                     "prompt_tokens": statistics.median(tokens) if tokens else None,
                     "cached_share": cached_share(rows),
                     "completion_tokens": statistics.median(done) if done else None}
    return out


def summarize(study: Study) -> dict[str, Any]:
    """The study's summary as plain JSON-serializable data.

    The time split adds up to the wall-clock: training, LLM time while no trial trained
    (exposed), tools, other. LLM time hidden behind training is reported beside it.
    """
    trials = study.trials()
    best = study.best()
    calls = study.timings("llm_call")
    d = decompose(study)
    protocol = next((e["detail"]["chosen"] for e in reversed(study.events("protocol"))), None)
    return {
        "study": study.name, "workload": study.workload, "metric": study.metric,
        "direction": study.direction, "trials": len(trials),
        "complete": sum(t.status == "complete" for t in trials),
        "failed": sum(t.status == "failed" for t in trials),
        "pruned": sum(t.status == "pruned" for t in trials),
        "best_value": best.value if best else None, "best_trial": best.number if best else None,
        "best_tool": best.tool if best else None, "best_config": best.evaluated if best else None,
        "tied_best": 0 if best is None else sum(
            t.status == "complete" and t.value == best.value for t in trials),
        "per_tool": {k: {"trials": r.trials, "improvements": r.improvements}
                     for k, r in sorted(tool_records(study).items())},
        "protocol": protocol, "llm_calls": len(calls),
        "clock": "virtual" if "virtual" in study.clocks() else "real",
        "llm_failed_calls": sum(bool(c["detail"].get("failed")) for c in calls),
        "llm_median_s": d["calls"]["critical"]["median_s"] if "critical" in d["calls"] else None,
        "cached_share": cached_share(calls),
        "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in calls),
        "retries": len(study.events("guard_retry")),
        "reminders": len(study.events("guard_reminder")),
        "fallbacks": len(study.events("fallback")),
        "llm_errors": len(study.events("llm_error")),
        "stopped_by_llm": bool(study.events("stop")),
        "llm_record": llm_record(study).as_dict(),
        "llm_asked": asked(study),
        "cores": cores(study, d["train_s"] / d["wall_s"] if d["wall_s"] else 0.0),
        "accept_rate": d["accept_rate"],
        "time": {k: d[k] for k in ("wall_s", "train_s", "exposed_llm_s", "tools_s", "startup_s",
                                   "other_s",
                                   "llm_s", "hidden_llm_s", "speculative_llm_s", "wasted_s")},
    }


Interval = tuple[float, float]


def cores(study: Study, train_share: float) -> dict[str, Any] | None:
    """How busy the trials kept the cores they had (:func:`asap.agent.cores.busy`: a trial's
    CPU seconds, every thread's, measured in its worker, over its seconds; the median), beside
    the last session's cores and workers; ``grown``: the session's growth to fill them, if it
    grew (:mod:`asap.agent.cores`); ``suggest``: the workers that would fill the cores left idle
    (and training at least half the wall-clock, ``train_share``: trials of milliseconds wait on
    the tuner, not on a core), else None. None where unmeasured: trials in this process, on Ray
    or on GPUs, or fewer than three.

    Why: an objective of one thread (most of scikit-learn's) leaves the other cores idle while
    one trial trains at a time, as Optuna's ``n_jobs=1`` does; the summary says what filled
    them, or what would."""
    session = next((e["detail"] for e in reversed(study.events("session"))), None)
    if not session or not session.get("cores"):
        return None
    rows = study.timings("train")
    share = busy(rows)
    if share is None or sum("cpu_s" in r["detail"] for r in rows) < MEASURED:
        return None
    have, workers = session["cores"], session["workers"]
    grown = next((e["detail"] for e in reversed(study.events("workers"))), None)
    fit = filling(share, have)
    return {"busy": share, "cores": have, "workers": workers, "grown": grown,
            "suggest": fit if fit > workers and train_share >= PACED_BY_TRAINING else None}


def cores_line(c: dict[str, Any] | None, option: str) -> str | None:
    """The summary's line on the cores (:func:`cores`): the workers the session grew to fill
    them, or the workers that would have, naming ``option`` (the CLI's ``--workers``, Python's
    ``workers=``); None when neither."""
    if not c:
        return None
    if (g := c["grown"]) is not None:
        return (f"the first {g['after']} trials kept {g['busy']:.1f} of {g['cores']} cores busy: "
                f"{g['to']} workers from trial {g['after'] + 1} on ({option}1 keeps one)")
    if c["suggest"] is None:
        return None
    at_once = "one at a time" if c["workers"] == 1 else f"{c['workers']} at a time"
    return (f"the trials kept {c['busy']:.1f} of {c['cores']} cores busy, {at_once}: "
            f"{option}{c['suggest']} would train {c['suggest']} at once")


def asked(study: Study) -> dict[str, Any] | None:
    """Why the LLM was or was not asked, as priced last (:mod:`asap.agent.pricing`): the last
    verdict and its reason, and how many rounds each verdict held. None when never priced."""
    priced = study.events("llm_price")
    if not priced:
        return None
    last = priced[-1]["detail"]
    by = [e["detail"].get("by") for e in study.events("decision")]
    return {"asked": last["ask"], "why": last["why"], "rounds_llm": by.count("llm"),
            "rounds_prior": by.count("prior")}


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


def covered(merged: list[Interval], busy: list[Interval]) -> float:
    """Seconds of the merged intervals ``merged`` that ``busy`` (merged) also covers."""
    return sum(overlap(a, busy) for a in merged)


def span(rows: list[dict[str, Any]]) -> list[Interval]:
    """The merged intervals of timing rows."""
    return merge([(r["start"], r["end"]) for r in rows])


def exposed_llm(study: Study) -> list[Interval]:
    """The intervals in which an LLM call ran and no trial trained: the LLM time a session
    waited for (what a virtual clock charged on the critical path)."""
    training = span(study.timings("train"))
    out: list[Interval] = []
    for s, e in span(study.timings("llm_call")):
        for ts, te in training:
            if te <= s or ts >= e:
                continue
            if ts > s:
                out.append((s, ts))
            s = max(s, te)
            if s >= e:
                break
        if s < e:
            out.append((s, e))
    return out


def wall_clock(study: Study, rows: list[dict[str, Any]]) -> float:
    """Seconds the study was worked on: the union of its sessions and of every timed row.

    A session killed before it logged itself (SIGKILL, a crash) still spent its rows' time, so
    summing the logged sessions alone undercounts, and shares of it passed 100 %.
    """
    spans = [(e["detail"]["start"], e["detail"]["end"]) for e in study.events("session")]
    spans += [(r["start"], r["end"]) for r in rows]
    return sum(e - s for s, e in merge(spans))


def startup_gaps(study: Study) -> list[Interval]:
    """Each session's start-up: from its start to the first trial it started (the worker's
    start, the first round's tools), or to its end when it started none."""
    starts = sorted(t.started_at for t in study.trials())
    gaps = []
    for e in study.events("session"):
        begin, end = e["detail"]["start"], e["detail"]["end"]
        first = next((s for s in starts if begin <= s <= end), end)
        gaps.append((begin, first))
    return gaps


def decompose(study: Study) -> dict[str, Any]:
    """The wall-clock split (its parts add up to ``wall_s``), the LLM's seconds by kind of call,
    speculation's accept rate and waste, the cache share, the self-tuner's knobs."""
    trains, calls = study.timings("train"), study.timings("llm_call")
    critical = [c for c in calls if call_kind(c) == "critical"]
    speculative = [c for c in calls if call_kind(c) == "speculative"]
    training, llm = span(trains), span(calls)
    tooling = span(study.timings("tool_call"))
    wall = wall_clock(study, trains + calls)
    train_s = sum(e - s for s, e in training)
    hidden = covered(llm, training)
    exposed = sum(e - s for s, e in llm) - hidden
    tools_s = sum(e - s for s, e in tooling) - covered(tooling, merge(training + llm))
    gaps = merge(startup_gaps(study))
    startup_s = sum(e - s for s, e in gaps) - covered(gaps, merge(training + llm + tooling))
    # Wasted: speculative LLM seconds inside the speculations that were discarded.
    dropped = span([t for t in study.timings("speculation") if t["detail"].get("wasted")])
    judged = study.events("speculation")
    return {
        "wall_s": wall,
        "train_s": train_s,
        "exposed_llm_s": exposed,
        "tools_s": tools_s,
        "startup_s": startup_s,
        "other_s": max(0.0, wall - train_s - exposed - tools_s - startup_s),
        "exposed_share": exposed / wall if wall else None,
        "llm_s": sum(c["duration"] for c in critical),
        "speculative_llm_s": sum(c["duration"] for c in speculative),
        "warmup_llm_s": sum(c["duration"] for c in calls if call_kind(c) == "warm-up"),
        "calls": by_kind(calls),
        "hidden_llm_s": hidden,
        "wasted_s": sum(overlap((c["start"], c["end"]), dropped) for c in speculative),
        "accept_rate": (sum(bool(e["detail"].get("accepted")) for e in judged) / len(judged)
                        if judged else None),
        "cached_share": cached_share(calls),
        "knobs": [{"at": e["at"], **e["detail"]["after"]} for e in study.events("selftune")],
    }
