"""The timeline PNG of ``asap report``: where a study's wall-clock went, lane by lane.

One lane for training (each trial a bar with its number and value, bars edged apart; one lane
per worker when several trained at once, from the ``worker`` of each train row), one for
critical-path LLM calls, one for speculative ones, one for warm-up calls (timing rows with ``detail.speculative``);
accept/reject marks come from ``speculation`` events. A resumed study's sessions are drawn one
after another, the idle time between them cut out and each start marked. The numbers behind it
are :func:`asap.agent.stats.decompose`.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from asap.agent.stats import Interval, call_kind, merge
from asap.tools.study import Study


class _Clock:
    """Study time to plot time: the worked spans (sessions, timed rows) laid end to end."""

    def __init__(self, spans: list[Interval]) -> None:
        self.spans = merge(spans) or [(0.0, 1.0)]
        self.starts = [s for s, _ in self.spans]
        self.offsets, at = [], 0.0
        for s, e in self.spans:
            self.offsets.append(at)
            at += e - s

    def __call__(self, t: float) -> float:
        i = max(0, bisect.bisect_right(self.starts, t) - 1)
        s, e = self.spans[i]
        return self.offsets[i] + min(max(t, s), e) - s


def trial_labels(study: Study, trains: list[dict], clock: _Clock) -> list[tuple[float, str]]:
    """Where to write each trial's number and value on its bar: bars wide enough to read
    (over 2.5 % of the plot), at their middle."""
    total = clock(clock.spans[-1][1]) or 1.0
    values = {t.number: t.value for t in study.trials()}
    out = []
    for r in trains:
        x0, x1 = clock(r["start"]), clock(r["end"])
        number = r.get("trial_number")
        if number is not None and (x1 - x0) / total > 0.025:
            value = values.get(number)
            out.append(((x0 + x1) / 2, f"#{number}" + ("" if value is None else f"\n{value:.3g}")))
    return out


def _training_lanes(trains: list[dict]) -> list[tuple[str, list[dict], str]]:
    """One training lane, or one per worker when trials trained side by side."""
    by_worker: dict[int, list[dict]] = {}
    for r in trains:
        by_worker.setdefault(int(r["detail"].get("worker") or 0), []).append(r)
    if len(by_worker) <= 1:
        return [("training", trains, "tab:green")]
    return [(f"worker {w}", items, "tab:green") for w, items in sorted(by_worker.items())]


def timeline(study: Study, path: str | Path) -> Path:
    """A PNG with one lane for training, one for critical LLM calls, one for speculative ones."""
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure state

    rows = study.timings()
    sessions = [(e["detail"]["start"], e["detail"]["end"]) for e in study.events("session")]
    clock = _Clock(sessions + [(r["start"], r["end"]) for r in rows])
    calls = [r for r in rows if r["kind"] == "llm_call"]
    lanes = _training_lanes([r for r in rows if r["kind"] == "train"]) + [
        (f"LLM ({name})", [r for r in calls if call_kind(r) == kind], color)
        for kind, name, color in (("critical", "critical path", "tab:red"),
                                  ("speculative", "speculative", "tab:orange"),
                                  ("warm-up", "warm-up", "tab:purple"))]
    top = len(lanes) - 0.5  # where the marks go, above the last lane
    fig = Figure(figsize=(12, 2.6 + 0.4 * len(lanes)))
    ax = fig.subplots()
    for y, (name, items, color) in enumerate(lanes):
        ax.broken_barh([(clock(r["start"]), clock(r["end"]) - clock(r["start"])) for r in items],
                       (y - 0.35, 0.7), facecolor=color, edgecolor="white", linewidth=1.0)
        if not name.startswith("LLM"):
            for x, text in trial_labels(study, items, clock):
                ax.text(x, y, text, ha="center", va="center", fontsize=7)
    for k, (s, _) in enumerate(merge(sessions)[1:], start=2):  # each resumed session's start
        ax.axvline(clock(s), color="gray", linestyle="--", linewidth=1)
        ax.text(clock(s), top + 0.1, f" session {k}", fontsize=7, color="gray", va="bottom")
    for e in study.events("speculation"):
        ok = e["detail"].get("accepted")
        ax.plot(clock(e["at"]), top, marker="v" if ok else "x", color="green" if ok else "black")
    ax.set_yticks(range(len(lanes)), [name for name, _, _ in lanes])
    ax.set_ylim(-0.6, top + 0.4)
    virtual = "virtual" in study.clocks()  # simulated seconds: trials cost their table time
    ax.set_xlabel(("simulated " if virtual else "") + "seconds worked (the time between "
                  "sessions cut out)")
    ax.set_title(f"{study.name}: {'virtual-clock' if virtual else 'wall-clock'} timeline "
                 "(v accepted, x rejected speculation)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
