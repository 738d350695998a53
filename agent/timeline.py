"""The timeline PNG of ``asap report``: where a study's wall-clock went, lane by lane.

One lane for training, one for critical-path LLM calls, one for speculative ones (timing rows with
``detail.speculative``); accept/reject marks come from ``speculation`` events. The numbers behind
it are :func:`asap.agent.stats.decompose`.
"""

from __future__ import annotations

from pathlib import Path

from asap.tools.ledger import Study


def timeline(study: Study, path: str | Path) -> Path:
    """A PNG with one lane for training, one for critical LLM calls, one for speculative ones."""
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure state

    rows = study.timings()
    t0 = min((r["start"] for r in rows), default=0.0)
    lanes = [
        ("training", [r for r in rows if r["kind"] == "train"], "tab:green"),
        ("LLM (critical path)", [r for r in rows if r["kind"] == "llm_call"
                                 and not r["detail"].get("speculative")], "tab:red"),
        ("LLM (speculative)", [r for r in rows if r["kind"] == "llm_call"
                               and r["detail"].get("speculative")], "tab:orange"),
    ]
    fig = Figure(figsize=(12, 3))
    ax = fig.subplots()
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
    return path
