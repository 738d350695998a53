"""The study plots of ``asap report`` beside the timeline: optimization history and importance.

History: the best value so far against trials and against wall-clock, every finished trial a
dot in the colour of the tool that proposed it (the timeline's colours), the value axis on the
range where progress happens. It is drawn here, not by Optuna's ``plot_optimization_history``,
because that one has no wall-clock axis and no per-tool colours, which are what asap is about.
Importance: Optuna's own ``plot_param_importances`` (fANOVA) on the study mirrored in memory, the
same chart and numbers optuna-dashboard shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asap.agent.report.palette import CALL_COLORS, tool_color
from asap.tools.ledger.study import Study
from asap.tools.types import better, printable


def history_range(study: Study, values: list[float], steps: list[float]
                  ) -> tuple[float, float]:
    """The value axis where progress happens: from the final best to where the best-so-far
    curve starts, padded; a start far worse than the typical trial (the 75th percentile on the
    worse side, twice its distance to the best) is cut there. A few terrible trials (a diverged
    loss) would otherwise squeeze the whole curve into one line."""
    sign = 1.0 if study.direction == "minimize" else -1.0
    typical = float(np.percentile(values, 75 if sign > 0 else 25))
    best = steps[-1]
    limit = typical + 2 * (typical - best)
    edge = min(steps[0] * sign, limit * sign) * sign
    lo, hi = sorted((best, edge))
    pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return lo - pad, hi + pad


MIN_IMPORTANCE = 10  # complete trials before importances are drawn (and half as many values)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay ``fig`` out and save it as ``path``. Its text is made printable first: a name from an
    old ledger may hold a control character, which no font draws (matplotlib's warning would
    print the raw byte, an ESC among them, to the terminal)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        if (shown := printable(text.get_text())) != text.get_text():
            text.set_text(shown)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def history(study: Study, path: str | Path) -> Path | None:
    """Best-so-far over trials and over wall-clock, each trial a dot in its tool's colour (the
    timeline's); None without a complete trial."""
    from matplotlib.figure import Figure

    done = [t for t in study.trials(status="complete") if t.value is not None]
    if not done:
        return None
    t0 = min(t.started_at for t in study.trials() if t.started_at)
    tools = sorted({t.tool for t in done})
    best, steps = None, []
    for t in done:
        if better(study.direction, t.value, best):
            best = t.value
        steps.append(best)
    lo, hi = history_range(study, [t.value for t in done], steps)
    off = sum(1 for t in done if not lo <= t.value <= hi)
    fig = Figure(figsize=(12, 4))
    by_trial, by_time = fig.subplots(1, 2, sharey=True)
    for ax, xs in ((by_trial, [t.number for t in done]),
                   (by_time, [(t.ended_at or t.started_at) - t0 for t in done])):
        ax.step(xs, steps, where="post", color="black", label="best so far")
        for tool in tools:
            pts = [(x, t.value) for x, t in zip(xs, done, strict=True) if t.tool == tool]
            ax.scatter(*zip(*pts, strict=True), s=18, color=tool_color(tool), label=tool)
        ax.set_ylim(lo, hi)
    by_trial.set_ylabel(study.metric + (f" ({off} trial{'s' * (off != 1)} off the axis)"
                                        if off else ""))
    by_trial.set_xlabel("trial")
    virtual = "virtual" in study.clocks()
    by_time.set_xlabel(("simulated " if virtual else "") + "seconds since the first trial")
    by_trial.legend(fontsize=8)
    fig.suptitle(f"{study.name}: optimization history ({study.direction})")
    return save_figure(fig, path)


def importance(study: Study, path: str | Path) -> tuple[Path | None, str]:
    """fANOVA parameter importances, drawn by Optuna's own ``plot_param_importances`` on the
    study mirrored in memory (the numbers and chart optuna-dashboard shows); ``(None, why)``
    when they cannot be computed (fewer than two complete trials, or no shared parameter)."""
    import warnings

    import optuna
    from matplotlib import pyplot as plt
    from optuna.visualization.matplotlib import plot_param_importances

    from asap.tools.ledger.optuna_mirror import importances

    complete = [t.value for t in study.trials(status="complete") if t.value is not None]
    if len(complete) < MIN_IMPORTANCE or len(set(complete)) < MIN_IMPORTANCE // 2:
        return None, (f"not drawn from {len(complete)} complete trials with "
                      f"{len(set(complete))} distinct values (it needs {MIN_IMPORTANCE} trials "
                      f"and {MIN_IMPORTANCE // 2} distinct values: fewer say little of what "
                      "mattered)")
    try:
        mirrored, scores = importances(study)
    except ValueError as exc:
        return None, str(exc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_param_importances(mirrored, evaluator=_computed(scores),
                                    target_name=study.metric)
    fig = ax.figure
    try:
        ax.set_title("", loc="left")  # Optuna's own title, replaced by the study's
        fig.suptitle("")
        ax.set_title(f"{study.name}: parameter importance (fANOVA, from {len(complete)} "
                     "complete trials)")
        fig.set_size_inches(8, 0.8 + 0.4 * len(study.space.names))
        path = save_figure(fig, path)
    finally:
        plt.close(fig)  # pyplot's figure registry: nothing left open in the process
    return path, ""


def _computed(scores: dict[str, float]) -> object:
    """An importance evaluator that returns importances already computed, so that Optuna's plot
    draws them instead of running fANOVA a second time."""
    from optuna.importance import BaseImportanceEvaluator

    class Computed(BaseImportanceEvaluator):
        def evaluate(self, study: object, params: object = None, *, target: object = None
                     ) -> dict[str, float]:
            return dict(scores)
    return Computed()


def llm_latency(study: Study, path: str | Path) -> Path | None:
    """Each LLM call's latency against its prompt length, by kind (critical, speculative,
    warm-up), cached tokens shaded: what the prompt's growth and the cache cost per call.
    None without a call that reported its prompt length."""
    from matplotlib.figure import Figure

    from asap.agent.report.stats import CALL_KINDS, answered, call_kind

    calls = [c for c in answered(study.timings("llm_call")) if c["prompt_tokens"]]
    if not calls:
        return None
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for kind in CALL_KINDS:  # the colour says the kind, the fill the cache: one meaning each
        color = CALL_COLORS[kind]
        rows = [c for c in calls if call_kind(c) == kind]
        for filled in (True, False):
            part = [c for c in rows
                    if ((c["cached_tokens"] or 0) / c["prompt_tokens"] >= 0.5) == filled]
            if part:
                ax.scatter([c["prompt_tokens"] for c in part], [c["duration"] for c in part],
                           s=22, edgecolors=color, facecolors=color if filled else "none",
                           label=f"{kind}, {'mostly cached' if filled else 'mostly uncached'} "
                                 f"({len(part)})")
    ax.set(xlabel="prompt tokens", ylabel="seconds",
           title=f"{study.name}: LLM latency against prompt length (hollow: mostly uncached)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
