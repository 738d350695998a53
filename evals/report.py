"""The eval's outputs: results table (CSV and SQLite), PNG plots and a markdown report."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from asap.agent.report.stats import decompose
from asap.agent.report.timeline import timeline
from asap.evals.axes import SINGLE, axes_md
from asap.evals.decisions import PICKERS, Picks, decision_quality
from asap.evals.metrics import bootstrap_ci
from asap.evals.results import CellResult, collect, rank_over_time, summary
from asap.tools.ledger.store import Ledger


def write_report(ledger: Ledger, out: str | Path, *, reference: str = "llm-naive",
                 title: str = "asap eval", settings: str = "", at_trials: int = 40) -> Path:
    """Write results.csv, the ``eval_results`` table, the plots and report.md; returns its path.
    ``settings`` says what was run (the grid's tasks, methods, budgets), under the title. Runs
    on the virtual clock get both axes (:mod:`asap.evals.axes`): regret at ``at_trials``
    trials and at each simulated budget."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = collect(ledger, reference)
    if not cells:
        raise ValueError(f"no finished cells in {ledger.path}: run the grid first")
    rows = [c.row() for c in cells]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with ledger.transaction():
        ledger.db["eval_results"].upsert_all(rows, pk="id")
    s = summary(cells)
    horizon = max(c.time_budget_s for c in cells)
    virtual = [c for c in cells if c.clock == "virtual"]
    if virtual:  # tasks have budgets of their own: one panel each, in simulated hours
        both, sim = axes_md(virtual, out, at_trials)
        plots = [sim, _trials_plot(cells, out / "regret_vs_trials.png")]
    else:
        both = ""
        plots = [_regret_plot(cells, out / "regret_vs_time.png", horizon),
                 _trials_plot(cells, out / "regret_vs_trials.png"),
                 _rank_plot(cells, out / "rank_vs_time.png", horizon)]
    asap = next((c for c in cells if c.method == "asap"), None)
    decomposition = None
    if asap is not None:
        study = ledger.open_study(asap.id)
        plots.append(timeline(study, out / "asap_timeline.png"))
        decomposition = (asap.id, decompose(study))
    rows = list(ledger.db["eval_cells"].rows_where("status = 'done'"))
    quality = decision_quality(ledger, rows)
    extra = both + _decisions_md(quality) + (_picks_md(quality.get("asap")) if virtual
                                             else _targets_md(s, quality.get("asap")))
    path = out / "report.md"
    path.write_text(_markdown(title, s, cells, reference, plots, decomposition, settings)
                    + extra)
    return path


def _decisions_md(quality: dict[str, Picks]) -> str:
    """Decision quality per method, with the reference pickers on the same rounds."""
    if not quality:
        return ""
    lines = ["", "## Decision quality", "",
             "Each round's offers looked up in the table (mean over its seeds): how often the pick "
             "was the best offer, and its mean rank (1 = best); the reference pickers are scored "
             "on the same rounds (random: in expectation).", "",
             "| method | rounds | picker | best pick | mean rank |", "|---|---|---|---|---|"]
    for method, q in sorted(quality.items()):
        for picker in PICKERS:
            lines.append(f"| {method} | {q.rounds} | {picker} | {_fmt(q.share(picker), '.1%')} "
                         f"| {_fmt(q.rank(picker), '.2f')} |")
        if q.rounds:
            lines.append(f"| {method} | | rounds the LLM decided | {q.llm_rounds} "
                         f"(the rest: its plan {q.planned}, the fallback "
                         f"{q.rounds - q.llm_rounds - q.planned}) | |")
        if q.overrides:
            lines.append(f"| {method} | | LLM overrides of A | {q.overrides} "
                         f"({q.better} better, {q.worse} worse by the table) | |")
    return "\n".join(lines) + "\n"


def _targets_md(s: dict[str, Any], picks: Picks | None = None) -> str:
    """The orchestrator's targets, checked on this grid's numbers (true-mean regret)."""
    table, tasks, methods = s["table"], s["tasks"], s["methods"]
    singles = [m for m in SINGLE if m in methods]
    if "asap" not in methods or not singles:
        return ""

    def regret(m: str, t: str) -> float | None:
        return table[(m, t)]["regret"] if (m, t) in table else None
    lines = ["", "## Targets", ""]
    ran = [t for t in tasks if regret("asap", t) is not None]
    wins = [t for t in ran if all(
        regret(m, t) is None or regret("asap", t) <= regret(m, t) for m in singles)]
    lines.append(f"- asap <= the best single tool ({', '.join(singles)}): {len(wins)} of the "
                 f"{len(ran)} tasks asap ran ({', '.join(wins) or 'none'}).")
    for other in ("portfolio", "prior", "random", "asap-naive", "llm-naive"):
        common = [t for t in tasks if regret("asap", t) is not None
                  and regret(other, t) is not None]
        if other in methods and common:
            a = statistics.mean(regret("asap", t) for t in common)
            o = statistics.mean(regret(other, t) for t in common)
            lines.append(f"- mean regret over the {len(common)} tasks both ran: asap {a:.4f}, "
                         f"{other} {o:.4f} ({'met' if a <= o else 'missed'}: asap <= {other}).")
    if "random" in methods:
        worse = [t for t in tasks if (a := regret("asap", t)) is not None
                 and (r := regret("random", t)) is not None and a > r]
        lines.append(f"- worse than random on: {', '.join(worse) or 'no task'}.")
    return "\n".join(lines + _picks(picks)) + "\n"


def _picks(picks: Picks | None) -> list[str]:
    """How often asap's pick was the round's best offer, against always-TPE and the bandit."""
    if picks is None or not picks.rounds:
        return []
    share = {p: picks.share(p) for p in ("asap", "always TPE", "bandit")}
    met = all(share["asap"] > share[p] for p in ("always TPE", "bandit"))
    return [f"- asap's pick was the round's best offer in {share['asap']:.1%} of "
            f"{picks.rounds} rounds; always TPE {share['always TPE']:.1%}, the bandit "
            f"{share['bandit']:.1%} ({'met' if met else 'missed'}: asap above both)."]


def _picks_md(picks: Picks | None) -> str:
    lines = _picks(picks)
    return "\n".join(["", "Decisions:", "", *lines]) + "\n" if lines else ""


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _markdown(title: str, s: dict[str, Any], cells: list[CellResult], reference: str,
              plots: list[Path], decomposition: tuple[str, dict] | None, settings: str = ""
              ) -> str:
    tasks, methods, table = s["tasks"], s["methods"], s["table"]
    seeds = max(v["seeds"] for v in table.values())
    lines = [f"# {title}", ""] + ([settings, ""] if settings else []) + [
             f"{len(cells)} runs: {len(tasks)} tasks x {len(methods)} methods x {seeds} seeds. "
             "Normalized regret at the budget (0 = the optimum, 1 = the worst value), mean over "
             "seeds with a 95 % bootstrap CI, and the rank on each task (1 = best); † marks "
             "runs that ended before their trial budget (see below).", ""]
    exact = {c.task: c.exact_optimum for c in cells}
    lines.append("| method | " + " | ".join(
        t + ("" if exact[t] else " (empirical)") for t in tasks) + " | avg rank |")
    lines.append("|---" * (len(tasks) + 2) + "|")
    for m in methods:
        cols = []
        for t in tasks:
            v = table.get((m, t))
            cols.append("-" if v is None else
                        f"{v['regret']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] (#{v['rank']:g})"
                        + (" †" if v["truncated"] else ""))
        lines.append(f"| {m} | " + " | ".join(cols) + f" | {s['avg_rank'][m]:.2f} |")
    lines += _truncated_md(cells)
    has_target = any(c.method == reference for c in cells)
    lines += ["", "Area under the regret curve over the wall-clock budget (lower is better)"
              + (f" and time to reach the target (the median final quality of `{reference}`), "
                 "median over the seeds that reached it:" if has_target else
                 f". Time-to-target is left out: its target is `{reference}`'s final quality, "
                 f"and `{reference}` was not among the methods run:"), "",
              "| method | " + " | ".join(f"{t} AUC" + (f" | {t} time-to-target" if has_target
                                                        else "") for t in tasks) + " |",
              "|---" * ((2 if has_target else 1) * len(tasks) + 1) + "|"]
    for m in methods:
        cols = []
        for t in tasks:
            v = table.get((m, t))
            auc = "-" if v is None else f"{v['auc']:.3f}"
            ttt = "-" if v is None else f"{_fmt(v['ttt'], '.1f')} s ({v['reached']}/{v['seeds']})"
            cols += [auc, ttt] if has_target else [auc]
        lines.append(f"| {m} | " + " | ".join(cols) + " |")
    lines += ["", "Mean wall-clock per run (s):", "",
              "| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(
            _fmt(table[(m, t)]["wall_s"], ".1f") if (m, t) in table else "-" for t in tasks) + " |")
    if decomposition:
        sid, d = decomposition
        lines += ["", f"Wall-clock decomposition of `{sid}`: {d['wall_s']:.1f} s, training "
                  f"{d['train_s']:.1f} s, exposed LLM {d['exposed_llm_s']:.1f} s "
                  f"({_fmt(d['exposed_share'], '.1%')}), hidden LLM {d['hidden_llm_s']:.1f} s, "
                  f"speculative LLM {d['speculative_llm_s']:.1f} s (wasted {d['wasted_s']:.1f} s), "
                  f"accept rate {_fmt(d['accept_rate'], '.0%')}, cached prompt tokens "
                  f"{_fmt(d['cached_share'], '.1%')}."]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def _truncated_md(cells: list[CellResult]) -> list[str]:
    """Which runs ended before their trial budget, and how far they got."""
    cut: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
    for c in cells:
        if c.truncated:
            cut[(c.method, c.task)].append(c)
    if not cut:
        return []
    lines = ["", "† Runs that ended before their trial budget (the wall-clock cap per run, or the "
             "LLM's stop): their regret is at fewer trials than the others'; "
             "regret_vs_trials.png compares at equal trials.", ""]
    for (m, t), group in sorted(cut.items()):
        got = ", ".join(str(c.trials) for c in group)
        lines.append(f"- {m} on {t}: {len(group)} run(s) stopped at {got} of "
                     f"{group[0].trials_budget} trials (cap {group[0].time_budget_s:g} s a run).")
    return lines


def _by(cells: list[CellResult]) -> dict[str, dict[str, list[CellResult]]]:
    out: dict[str, dict[str, list[CellResult]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        out[c.task][c.method].append(c)
    return out


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % bootstrap band of ``values`` (seeds x points), point by point."""
    stats = np.array([bootstrap_ci(col, n=500) for col in values.T])
    return stats[:, 0], stats[:, 1], stats[:, 2]


def _figure(n: int):
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure state
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(5 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _regret_plot(cells: list[CellResult], path: Path, horizon: float) -> Path:
    by = _by(cells)
    fig, axes = _figure(len(by))
    times = np.linspace(0, horizon, 60)
    for ax, (task, methods) in zip(axes, sorted(by.items()), strict=False):
        for m, group in sorted(methods.items()):
            mean, lo, hi = _band(np.array([[c.regret_at(t) for t in times] for c in group]))
            ax.plot(times, mean, label=m)
            ax.fill_between(times, lo, hi, alpha=0.2)
        ax.set(title=task, xlabel="wall-clock (s)", ylabel="normalized regret")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def _trials_plot(cells: list[CellResult], path: Path) -> Path:
    from asap.evals.metrics import normalized_regret, value_at
    by = _by(cells)
    fig, axes = _figure(len(by))
    n = max(c.trials for c in cells)
    counts = np.arange(1, n + 1)
    for ax, (task, methods) in zip(axes, sorted(by.items()), strict=False):
        for m, group in sorted(methods.items()):
            # Only as far as every run of the method got: a run cut short has no value there.
            reach = counts[:min(c.trials for c in group)]
            if not len(reach):
                continue
            mean, lo, hi = _band(np.array([[normalized_regret(value_at(c.by_trial, k), c.optimum,
                                                              c.worst) for k in reach]
                                           for c in group]))
            cut = any(c.truncated for c in group)
            ax.plot(reach, mean, label=m + (f" (cut at {len(reach)})" if cut else ""))
            ax.fill_between(reach, lo, hi, alpha=0.2)
        ax.set(title=task, xlabel="trials", ylabel="normalized regret")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def _rank_plot(cells: list[CellResult], path: Path, horizon: float) -> Path:
    fig, axes = _figure(1)
    times = list(np.linspace(horizon / 60, horizon, 60))
    for m, series in sorted(rank_over_time(cells, times).items()):
        axes[0].plot(times, series, label=m)
    axes[0].set(title="average rank across tasks", xlabel="wall-clock (s)", ylabel="rank (1 = best)")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
