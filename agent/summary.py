"""What a study amounts to: best config, per-tool record, LLM numbers, the wall-clock split.

Everything is computed from the ledger alone, so ``asap show`` on an old study, ``asap tune
--json`` and the live display agree.
"""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from asap.agent.ledger import Study
from asap.agent.prompt import tool_records


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
    from asap.agent.report import decompose
    trials = study.trials()
    best = study.best()
    calls = study.timings("llm_call")
    sessions = study.events("session")
    wall = sum(s["detail"]["end"] - s["detail"]["start"] for s in sessions)
    train_s = sum(t["duration"] for t in study.timings("train"))
    d = decompose(study)
    tools_s = sum(t["duration"] for t in study.timings("tool_call"))
    protocol = next((e["detail"]["chosen"] for e in reversed(study.events("protocol"))), None)
    return {
        "study": study.name, "workload": study.workload, "metric": study.metric,
        "direction": study.direction, "trials": len(trials),
        "complete": sum(t.status == "complete" for t in trials),
        "failed": sum(t.status == "failed" for t in trials),
        "pruned": sum(t.status == "pruned" for t in trials),
        "best_value": best.value if best else None, "best_trial": best.number if best else None,
        "best_tool": best.tool if best else None, "best_config": best.config if best else None,
        "per_tool": {k: {"trials": r.trials, "improvements": r.improvements}
                     for k, r in sorted(tool_records(study).items())},
        "protocol": protocol, "llm_calls": len(calls),
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


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The end-of-session report: best config, per-tool record, LLM numbers, time split."""
    s = summary
    if s["best_value"] is None:
        console.print(f"[bold]{s['study']}[/]: no complete trial ({s['trials']} trials)")
    else:
        console.print(f"[bold]{s['study']}[/]: best {s['metric']} = {s['best_value']:.6g} "
                      f"(trial {s['best_trial']}, {s['best_tool']})\n  config {s['best_config']}")
    tools = Table("tool", "trials", "improved the best", title="per-tool record")
    for tool, rec in s["per_tool"].items():
        tools.add_row(tool, str(rec["trials"]), str(rec["improvements"]))
    console.print(tools)
    t = s["time"]
    split = Table("wall-clock", "seconds", "share", title="time split")
    for key, name in (("train_s", "training"), ("exposed_llm_s", "LLM, trainer idle"),
                      ("tools_s", "tools"), ("other_s", "other")):
        share = f"{t[key] / t['wall_s']:.0%}" if t["wall_s"] and t[key] is not None else "-"
        split.add_row(name, f"{t[key]:.1f}" if t[key] is not None else "-", share)
    split.add_row("total", f"{t['wall_s']:.1f}", "")
    split.add_row("LLM hidden behind training", f"{t['hidden_llm_s']:.1f}", "")
    split.add_row("speculative LLM", f"{t['speculative_llm_s']:.1f}", "")
    console.print(split)
    median = f"{s['llm_median_s']:.2f}s" if s["llm_median_s"] is not None else "-"
    cached = f"{s['cached_share']:.0%}" if s["cached_share"] is not None else "unknown"
    console.print(f"LLM: {s['llm_calls']} calls ({s['protocol'] or 'no'} protocol), median "
                  f"{median}, prompt tokens from cache {cached}; guard: {s['retries']} retries, "
                  f"{s['reminders']} reminders, {s['fallbacks']} fallbacks, "
                  f"{s['llm_errors']} LLM errors")
