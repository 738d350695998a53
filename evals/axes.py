"""Both axes of a virtual-clock eval, read from the same runs: regret after N trials, and regret
after each simulated budget, with time-to-target against each single tool and the targets of
wall-clock-centered decisions stated as met or missed.

Why both: by trials a method that buys expensive configurations can lead while it falls behind
per simulated hour (the GP prior's 40 trials took 3.6x CMA-ES's training time); a user asks
"how good is my model after an hour?", and a method is only better if it holds on both.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from asap.evals.grid import sim_budgets
from asap.evals.metrics import bootstrap_ci, ranks, time_to_target
from asap.evals.results import CellResult

# The tools asap orchestrates, each alone, and the strongest samplers a user would run instead
SINGLE = ("tpe", "cmaes", "ngopt", "random", "optuna-gp", "smac")


def hours(seconds: float) -> str:
    """A simulated time as people say it: 40 s, 15 min, 2.5 h."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    return f"{seconds / 3600:.3g} h" if seconds >= 3600 else f"{seconds / 60:.3g} min"


def levels(tasks: list[str]) -> list[dict[str, float]]:
    """The report's budget levels: level k reads every task at its benchmark's k-th budget (its
    last one when it has fewer): HPOBench 15 min / 1 h / 4 h beside NAS-Bench-201 6 h / 24 h /
    24 h."""
    budgets = {t: sim_budgets(t) for t in tasks if sim_budgets(t)}
    depth = max((len(b) for b in budgets.values()), default=0)
    return [{t: b[min(k, len(b) - 1)] for t, b in budgets.items()} for k in range(depth)]


def _groups(cells: list[CellResult]) -> dict[tuple[str, str], list[CellResult]]:
    out: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
    for c in cells:
        out[(c.method, c.task)].append(c)
    return out


def _table(cells: list[CellResult], score, title: str, note: str) -> list[str]:
    """One method x task table of ``score(cell)`` (regret): mean [95 % CI] (#rank), avg rank."""
    groups = _groups(cells)
    tasks = sorted({t for _, t in groups})
    methods = sorted({m for m, _ in groups})
    means = {k: bootstrap_ci([score(c) for c in g]) for k, g in groups.items()}
    rank_of: dict[tuple[str, str], float] = {}
    for t in tasks:
        for m, r in ranks({m: means[(m, t)][0] for m in methods if (m, t) in means}).items():
            rank_of[(m, t)] = r
    avg = {m: statistics.mean(rank_of[(m, t)] for t in tasks if (m, t) in rank_of)
           for m in methods}
    lines = ["", f"### {title}", "", note, "", "| method | " + " | ".join(tasks) + " | avg rank |",
             "|---" * (len(tasks) + 2) + "|"]
    for m in sorted(methods, key=avg.get):
        cols = [f"{means[(m, t)][0]:.4f} [{means[(m, t)][1]:.4f}, {means[(m, t)][2]:.4f}] "
                f"(#{rank_of[(m, t)]:g})" if (m, t) in means else "-" for t in tasks]
        lines.append(f"| {m} | " + " | ".join(cols) + f" | {avg[m]:.2f} |")
    return lines


def _seed_mean(cells: list[CellResult], method: str, score) -> tuple[float, float, float] | None:
    """Mean over tasks of ``score`` for each seed of ``method``, then its bootstrap CI over seeds."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for c in cells:
        if c.method == method:
            by_seed[c.seed].append(score(c))
    return bootstrap_ci([statistics.mean(v) for v in by_seed.values()]) if by_seed else None


def _fmt(ci: tuple[float, float, float] | None, spec: str = ".4f") -> str:
    return "-" if ci is None else f"{ci[0]:{spec}} [{ci[1]:{spec}}, {ci[2]:{spec}}]"


def _hours_for(c: CellResult, n: int) -> float | None:
    return c.ends[n - 1] / 3600 if len(c.ends) >= n else None


def overview_md(cells: list[CellResult], at_trials: int) -> list[str]:
    """One row per method: mean regret at ``at_trials`` trials over all tasks, the simulated
    hours those trials took (HPOBench), mean regret at each HPOBench and NAS-Bench-201 budget;
    means over seeds of the per-seed task mean, 95 % bootstrap CI."""
    hpo = [c for c in cells if c.task.startswith("hpobench:")]
    nas = [c for c in cells if c.task.startswith("nasbench201:")]
    cols = [(f"regret @{at_trials} trials, {len({c.task for c in cells})} tasks", cells,
             lambda c: c.regret_at_trials(at_trials), ".4f")]
    if hpo:
        cols.append((f"simulated hours for {at_trials} trials, HPOBench", hpo,
                     lambda c: _hours_for(c, at_trials) or c.wall_s / 3600, ".2f"))
    for group, name in ((hpo, "HPOBench"), (nas, "NAS-Bench-201")):
        for t in sim_budgets(group[0].task) if group else ():
            cols.append((f"regret after {hours(t)}, {name}", group,
                         lambda c, t=t: c.regret_at(t), ".4f"))
    lines = ["", "### Both axes at a glance", "",
             "Mean over seeds of each seed's mean over tasks, 95 % bootstrap CI over the seeds; "
             "regret is normalized and scored by the table's mean over its seeds.", "",
             "| method | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    order = sorted({c.method for c in cells},
                   key=lambda m: _seed_mean(cells, m, cols[0][2])[0])
    for m in order:
        lines.append(f"| {m} | " + " | ".join(_fmt(_seed_mean(g, m, f), spec)
                                              for _, g, f, spec in cols) + " |")
    short = [c for c in cells if len(c.ends) < at_trials]
    if short:
        lines += ["", f"{len(short)} run(s) ended before {at_trials} trials (their simulated "
                  f"budget ran out); their regret @{at_trials} trials is at their last trial, "
                  "and their hours are the whole run's."]
    return lines


def ttt_md(cells: list[CellResult]) -> list[str]:
    """Simulated time to reach each single tool's median final quality, per method and task."""
    groups = _groups(cells)
    tasks = sorted({t for _, t in groups})
    methods = sorted({m for m, _ in groups})
    lines: list[str] = []
    for ref in (s for s in SINGLE if s in methods):
        lines += ["", f"### Time to reach `{ref}`'s median final quality", "",
                  "Median simulated time over the seeds that reached it (reached/seeds).", "",
                  "| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        targets = {t: statistics.median(c.best for c in groups[(ref, t)] if c.best is not None)
                   for t in tasks if any(c.best is not None for c in groups.get((ref, t), []))}
        for m in methods:
            cols = []
            for t in tasks:
                runs = groups.get((m, t), [])
                if t not in targets or not runs:
                    cols.append("-")
                    continue
                got = [x for c in runs if (x := time_to_target(c.by_time, targets[t],
                                                               c.maximize)) is not None]
                cols.append(f"{hours(statistics.median(got)) if got else 'never'} "
                            f"({len(got)}/{len(runs)})")
            lines.append(f"| {m} | " + " | ".join(cols) + " |")
    return lines


def _behind(groups: dict[tuple[str, str], list[CellResult]], tasks: list[str],
            singles: list[str], mean: dict[tuple[str, str], float], score) -> str:
    """On each task asap misses: asap minus the best single tool there, paired by seed, with
    its 95 % bootstrap CI; a CI across 0 is a miss the seeds cannot tell from noise."""
    parts, clear = [], 0
    for t in tasks:
        s = min((s for s in singles if (s, t) in mean), key=lambda s: mean[(s, t)])
        theirs = {c.seed: score(c) for c in groups[(s, t)]}
        d = [score(c) - theirs[c.seed] for c in groups[("asap", t)] if c.seed in theirs]
        if not d:
            continue
        m, lo, hi = bootstrap_ci(d)
        clear += lo > 0
        parts.append(f"{t} {m:+.4f} [{lo:+.4f}, {hi:+.4f}] against {s}")
    if not parts:
        return ""
    return (f" Where asap misses, asap minus the best single tool, paired by seed: "
            f"{'; '.join(parts)} (behind beyond the noise on {clear}).")


def targets_md(cells: list[CellResult], at_trials: int) -> list[str]:
    """The targets of wall-clock-centered decisions, each stated as met or missed."""
    methods = {c.method for c in cells}
    singles = [s for s in SINGLE if s in methods]
    if "asap" not in methods or not singles:
        return []
    groups = _groups(cells)
    tasks = sorted({t for _, t in groups})
    lines = ["", "## Targets (wall-clock-centered decisions)", ""]
    for k, level in enumerate(levels(tasks)):
        mean = {key: statistics.mean(c.regret_at(level[key[1]]) for c in g)
                for key, g in groups.items() if key[1] in level}
        ran = [t for t in level if ("asap", t) in mean]
        wins = [t for t in ran if all(mean[("asap", t)] <= mean[(s, t)]
                                      for s in singles if (s, t) in mean)]
        rank_sum: dict[str, list[float]] = defaultdict(list)
        for t in ran:
            for m, r in ranks({m: mean[(m, t)] for m in methods if (m, t) in mean}).items():
                rank_sum[m].append(r)
        avg = {m: statistics.mean(v) for m, v in rank_sum.items()}
        best = min(avg, key=avg.get) if avg else None
        at = ", ".join(sorted({hours(v) for v in level.values()}))
        need = min(4, len(ran))
        short = ([f"{len(wins)} of {len(ran)} tasks, not {need}"] if len(wins) < need else []) \
            + ([f"{best} has the best mean rank"] if best != "asap" else [])
        lines.append(f"- budget level {k + 1} ({at}): asap <= the best single tool on "
                     f"{len(wins)} of {len(ran)} tasks ({', '.join(wins) or 'none'}); mean rank "
                     f"asap {avg.get('asap', float('nan')):.2f}, best {best} "
                     f"{avg.get(best, float('nan')):.2f} ("
                     + (f"missed: {' and '.join(short)}" if short else "met")
                     + f"; the target: >= {need} of {len(ran)} tasks and the best mean rank)."
                     + _behind(groups, [t for t in ran if t not in wins], singles, mean,
                               lambda c, b=level: c.regret_at(b[c.task])))
    asap = _seed_mean(cells, "asap", lambda c: c.regret_at_trials(at_trials))
    prior = _seed_mean(cells, "prior", lambda c: c.regret_at_trials(at_trials))
    if asap and prior:
        lines.append(f"- trial axis: asap's mean regret @{at_trials} trials {_fmt(asap)}, the "
                     f"prior's {_fmt(prior)} ({'met' if asap[0] <= prior[2] else 'missed'}: "
                     "asap within the prior's CI or better).")
    hour = [c.exposed_within(3600.0) / 3600.0 for c in cells
            if c.method == "asap" and c.wall_s >= 3600.0]
    if hour:
        share = statistics.mean(hour)
        lines.append(f"- the LLM's charged (exposed) time in the first simulated hour: "
                     f"{share:.2%} of it, mean over {len(hour)} asap runs "
                     f"({'met' if share <= 0.05 else 'missed'}: <= 5 %).")
    lines.append("- the README quickstart's exposed LLM share is measured by running it (a real "
                 "session), not by this grid.")
    return lines


def sim_plot(cells: list[CellResult], path: Path) -> Path:
    """Regret against simulated hours, one panel per task up to its budget: mean and 95 %
    bootstrap band over the seeds."""
    from matplotlib.figure import Figure
    by_task: dict[str, dict[str, list[CellResult]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        by_task[c.task][c.method].append(c)
    n = len(by_task)
    cols = min(n, 3)
    fig = Figure(figsize=(5 * cols, 3.6 * ((n + cols - 1) // cols)))
    axes = fig.subplots((n + cols - 1) // cols, cols, squeeze=False).flat
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, (task, methods) in zip(axes, sorted(by_task.items()), strict=False):
        horizon = max(c.time_budget_s for g in methods.values() for c in g)
        times = np.linspace(0, horizon, 80)
        for m, group in sorted(methods.items()):
            stats = np.array([bootstrap_ci([c.regret_at(t) for c in group], n=300)
                              for t in times])
            ax.plot(times / 3600, stats[:, 0], label=m)
            ax.fill_between(times / 3600, stats[:, 1], stats[:, 2], alpha=0.15)
        for t in sim_budgets(task):
            ax.axvline(t / 3600, color="gray", linewidth=0.6, linestyle=":")
        ax.set(title=task, xlabel="simulated hours (agent's time charged)",
               ylabel="normalized regret")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def axes_md(cells: list[CellResult], out: Path, at_trials: int = 40) -> tuple[str, Path]:
    """The virtual-clock section of the report and its plot."""
    lines = ["", "## Both axes: trials and simulated wall-clock", ""]
    lines += overview_md(cells, at_trials)
    lines += _table(cells, lambda c: c.regret_at_trials(at_trials),
                    f"Regret after {at_trials} trials",
                    "Mean over seeds [95 % bootstrap CI] (rank on the task).")
    for k, level in enumerate(levels(sorted({c.task for c in cells}))):
        at = ", ".join(sorted({f"{t.partition(':')[0]} {hours(v)}" for t, v in level.items()}))
        lines += _table([c for c in cells if c.task in level],
                        lambda c, lv=level: c.regret_at(lv[c.task]),
                        f"Regret after simulated budget level {k + 1} ({at})",
                        "Mean over seeds [95 % bootstrap CI] (rank on the task); a run that "
                        "stopped earlier (its trial cap) keeps its last incumbent.")
    lines += ttt_md(cells) + targets_md(cells, at_trials)
    return "\n".join(lines) + "\n", sim_plot(cells, out / "regret_vs_simulated_time.png")
