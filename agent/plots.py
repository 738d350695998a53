"""The study plots of ``asap report`` beside the timeline: optimization history and importance.

History: the best value so far against trials and against wall-clock, every finished trial a
dot coloured by the tool that proposed it (which tool earned its place is visible at a glance).
Importance: Optuna's fANOVA on the study's trials (mirrored into an in-memory Optuna study), the
same numbers optuna-dashboard shows. Both drawn on a matplotlib ``Figure`` (no pyplot).
"""

from __future__ import annotations

from pathlib import Path

from asap.tools.study import Study
from asap.tools.types import better


def history(study: Study, path: str | Path) -> Path | None:
    """Best-so-far over trials and over wall-clock, trials coloured by tool; None without a
    complete trial."""
    from matplotlib.figure import Figure

    done = [t for t in study.trials(status="complete") if t.value is not None]
    if not done:
        return None
    t0 = min(t.started_at for t in study.trials() if t.started_at)
    tools = sorted({t.tool for t in done})
    colors = {tool: f"C{i % 10}" for i, tool in enumerate(tools)}
    best, steps = None, []
    for t in done:
        if better(study.direction, t.value, best):
            best = t.value
        steps.append(best)
    fig = Figure(figsize=(12, 4))
    by_trial, by_time = fig.subplots(1, 2)
    for ax, xs in ((by_trial, [t.number for t in done]),
                   (by_time, [(t.ended_at or t.started_at) - t0 for t in done])):
        ax.step(xs, steps, where="post", color="black", label="best so far")
        for tool in tools:
            pts = [(x, t.value) for x, t in zip(xs, done, strict=True) if t.tool == tool]
            ax.scatter(*zip(*pts, strict=True), s=18, color=colors[tool], label=tool)
        ax.set_ylabel(study.metric)
    by_trial.set_xlabel("trial")
    by_time.set_xlabel("seconds since the first trial")
    by_trial.legend(fontsize=8)
    fig.suptitle(f"{study.name}: optimization history ({study.direction})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def importance(study: Study, path: str | Path) -> tuple[Path | None, str]:
    """fANOVA parameter importances as a bar chart; ``(None, why)`` when they cannot be
    computed (fewer than two complete trials, or no parameter common to them)."""
    import optuna
    from matplotlib.figure import Figure

    from asap.tools.optuna_mirror import in_memory

    if len(study.trials(status="complete")) < 2:
        return None, "parameter importance needs at least 2 complete trials"
    try:
        scores = optuna.importance.get_param_importances(
            in_memory(study), evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return None, f"parameter importance could not be computed: {exc}"
    if not scores:
        return None, "no parameter is shared by the complete trials"
    names = list(scores)[::-1]
    fig = Figure(figsize=(7, 0.5 + 0.4 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [scores[n] for n in names], color="tab:blue")
    ax.set_xlabel("fANOVA importance (share of the objective's variance)")
    ax.set_title(f"{study.name}: parameter importance")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path, ""


def llm_latency(study: Study, path: str | Path) -> Path | None:
    """Each LLM call's latency against its prompt length, by kind (critical, speculative,
    warm-up), cached tokens shaded: what the prompt's growth and the cache cost per call.
    None without a call that reported its prompt length."""
    from matplotlib.figure import Figure

    from asap.agent.stats import CALL_KINDS, answered, call_kind

    calls = [c for c in answered(study.timings("llm_call")) if c["prompt_tokens"]]
    if not calls:
        return None
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for kind, color in zip(CALL_KINDS, ("tab:red", "tab:orange", "tab:purple"), strict=True):
        rows = [c for c in calls if call_kind(c) == kind]
        if rows:
            cached = [(c["cached_tokens"] or 0) / c["prompt_tokens"] for c in rows]
            ax.scatter([c["prompt_tokens"] for c in rows], [c["duration"] for c in rows], s=22,
                       color=color, alpha=[0.35 + 0.65 * x for x in cached],
                       label=f"{kind} ({len(rows)})")
    ax.set(xlabel="prompt tokens", ylabel="seconds",
           title=f"{study.name}: LLM latency against prompt length (faint: mostly uncached)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
