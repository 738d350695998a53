"""``asap report``: where a study's wall-clock went, as numbers and as a timeline PNG.

Exposed LLM time is time when an LLM call runs and no trial trains (the trainer idles, waiting
for a decision); hidden LLM time is critical-path LLM time that overlapped training. Speculative calls (timing rows with
``detail.speculative``) get their own lane; accept/reject marks come from ``speculation`` events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asap.agent.ledger import Study
from asap.agent.summary import cached_share

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
    sessions = study.events("session")
    wall = sum(s["detail"]["end"] - s["detail"]["start"] for s in sessions)
    if not wall and (trains or calls):
        rows = trains + calls
        wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
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


def timeline(study: Study, path: str | Path) -> Path:
    """A PNG with one lane for training, one for critical LLM calls, one for speculative ones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study.timings()
    t0 = min((r["start"] for r in rows), default=0.0)
    lanes = [
        ("training", [r for r in rows if r["kind"] == "train"], "tab:green"),
        ("LLM (critical path)", [r for r in rows if r["kind"] == "llm_call"
                                 and not r["detail"].get("speculative")], "tab:red"),
        ("LLM (speculative)", [r for r in rows if r["kind"] == "llm_call"
                               and r["detail"].get("speculative")], "tab:orange"),
    ]
    fig, ax = plt.subplots(figsize=(12, 3))
    for y, (_, items, color) in enumerate(lanes):
        ax.broken_barh([(r["start"] - t0, r["duration"]) for r in items], (y - 0.35, 0.7),
                       color=color)
    for e in study.events("speculation"):
        ok = e["detail"].get("accepted")
        ax.plot(e["at"] - t0, 2.5, marker="v" if ok else "x", color="green" if ok else "black")
    ax.set_yticks(range(len(lanes)), [name for name, _, _ in lanes])
    ax.set_ylim(-0.6, 2.8)
    ax.set_xlabel("seconds")
    ax.set_title(f"{study.name}: wall-clock timeline (v accepted, x rejected speculation)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
