"""The timeline PNG of ``asap report``: where a study's wall-clock went, lane by lane.

Training: each trial a bar coloured by the tool that proposed it (the history's colours, see
:mod:`asap.agent.report.palette`), with its number and value, bars edged apart; one lane per worker
when several trained at once (from the ``worker`` of each train row). Then one lane per kind of
LLM call that happened (critical path, speculative, warm-up): a lane with nothing on it is left
out. Speculation's accept/reject marks sit on the speculative lane, at the verdict's time. The
start-up gap (the session started, no trial trains yet: the server, the fork server, the first
decision) is shaded and labelled. A resumed study's sessions are drawn one after another, the
idle time between them cut out and each start marked. The numbers behind it are
:func:`asap.agent.report.stats.decompose`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from asap.agent.report.palette import CALL_COLORS, tool_color
from asap.agent.report.plots import save_figure
from asap.agent.report.stats import Interval, call_kind, merge
from asap.tools.ledger.study import Study


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


@dataclass
class Lane:
    """One row of the timeline: its bars (plot start, width, colour) and marks (x, accepted)."""

    name: str
    bars: list[tuple[float, float, str]] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)
    marks: list[tuple[float, bool]] = field(default_factory=list)


@dataclass
class Layout:
    """What the timeline draws, in plot seconds: computed apart from drawing, so it is tested."""

    lanes: list[Lane]
    startup: tuple[float, float] | None  # the shaded gap before the first trial
    sessions: list[float]  # where each resumed session starts
    total: float
    tools: dict[str, str] = field(default_factory=dict)  # the training bars' tools: colours


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


def layout(study: Study) -> Layout:
    """The timeline's lanes, marks, start-up gap and session starts."""
    rows = study.timings()
    sessions = [(e["detail"]["start"], e["detail"]["end"]) for e in study.events("session")]
    clock = _Clock(sessions + [(r["start"], r["end"]) for r in rows])
    tools = {t.number: t.tool for t in study.trials()}
    trains = [r for r in rows if r["kind"] == "train"]
    by_worker: dict[int, list[dict]] = {}
    for r in trains:
        by_worker.setdefault(int(r["detail"].get("worker") or 0), []).append(r)
    lanes, used = [], {}
    for w, items in sorted(by_worker.items()):
        for r in items:
            tool = r["detail"].get("tool") or tools.get(r.get("trial_number"))
            if tool:
                used[tool] = tool_color(tool)
        bars = [(clock(r["start"]), clock(r["end"]) - clock(r["start"]),
                 tool_color(r["detail"].get("tool") or tools.get(r.get("trial_number"), "")))
                for r in items]
        name = "training" if len(by_worker) == 1 else f"worker {w}"
        lanes.append(Lane(name, bars, trial_labels(study, items, clock)))
    calls = [r for r in rows if r["kind"] == "llm_call"]
    verdicts = [(clock(e["at"]), bool(e["detail"].get("accepted")))
                for e in study.events("speculation")]
    for kind, name in (("critical", "critical path"), ("speculative", "speculative"),
                       ("warm-up", "warm-up")):
        items = [r for r in calls if call_kind(r) == kind]
        marks = verdicts if kind == "speculative" else []
        if items or marks:
            lanes.append(Lane(f"LLM ({name})", [
                (clock(r["start"]), clock(r["end"]) - clock(r["start"]), CALL_COLORS[kind])
                for r in items], marks=marks))
    first = merge(sessions)[0][0] if sessions else None
    startup = None
    if first is not None and trains:
        begin = clock(min(r["start"] for r in trains))
        startup = (clock(first), begin) if begin > clock(first) else None
    starts = [clock(s) for s, _ in merge(sessions)[1:]]
    return Layout(lanes, startup, starts, clock(clock.spans[-1][1]), dict(sorted(used.items())))


def timeline(study: Study, path: str | Path) -> Path:
    """The timeline as a PNG at ``path`` (see the module docstring)."""
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure state

    plan = layout(study)
    lanes = plan.lanes or [Lane("training")]
    fig = Figure(figsize=(12, 2.2 + 0.45 * len(lanes)))
    ax = fig.subplots()
    for y, lane in enumerate(lanes):
        ax.broken_barh([(x, w) for x, w, _ in lane.bars], (y - 0.35, 0.7),
                       facecolor=[c for _, _, c in lane.bars], edgecolor="white", linewidth=1.0)
        for x, text in lane.labels:
            ax.text(x, y, text, ha="center", va="center", fontsize=7)
        for x, ok in lane.marks:
            ax.plot(x, y + 0.45, marker="v" if ok else "x", color="green" if ok else "black",
                    markersize=6)
    if plan.startup is not None:
        ax.axvspan(*plan.startup, color="0.92", zorder=0)
        ax.text(plan.startup[0], len(lanes) - 0.45, " start-up", fontsize=7, color="0.4",
                va="bottom")
    for k, x in enumerate(plan.sessions, start=2):
        ax.axvline(x, color="gray", linestyle="--", linewidth=1)
        ax.text(x, len(lanes) - 0.45, f" session {k}", fontsize=7, color="gray", va="bottom")
    if plan.tools:
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color=c, label=t) for t, c in plan.tools.items()], fontsize=7,
                  loc="upper right", ncols=min(4, len(plan.tools)))
    ax.set_yticks(range(len(lanes)), [lane.name for lane in lanes])
    ax.set_ylim(-0.6, len(lanes) + (0.3 if plan.tools else -0.1))
    virtual = "virtual" in study.clocks()  # simulated seconds: trials cost their table time
    ax.set_xlabel(("simulated " if virtual else "") + "seconds worked (the time between "
                  "sessions cut out); training bars in the colour of the tool that proposed "
                  "them, as in the history")
    kinds = {ok for lane in lanes for _, ok in lane.marks}  # the title keys only marks drawn
    key = ", ".join(text for ok, text in ((True, "v accepted"), (False, "x rejected"))
                    if ok in kinds)
    ax.set_title(f"{study.name}: {'virtual-clock' if virtual else 'wall-clock'} timeline"
                 + (f" ({key} speculation)" if key else ""))
    return save_figure(fig, path)
