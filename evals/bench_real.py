"""asap against the Optuna samplers it wraps, on the real clock, on objectives of a few seconds.

The question a user timing asap asks: "I ran Optuna on my scikit-learn model; is asap as fast,
and does it get as far?" For each objective in :mod:`asap.evals.objectives` and each repeat,
every method runs ``--trials`` trials once, in alternation (drift in the machine's load hits
every method alike), with the repeat's seed:

- ``optuna-tpe`` / ``optuna-cmaes``: ``optuna.create_study(sampler=...).optimize(objective)``
  in this process, as users run it;
- ``asap``: ``asap.optimize`` with its defaults (the embedded LLM server started by the call;
  workers grown to fill the cores the first trials left idle);
- ``asap-serial``: ``workers=1`` (one trial at a time, as Optuna's default ``n_jobs=1``);
- ``asap-nollm``: ``asap.optimize(..., llm=False)`` (the panel and the prior);
- ``asap-inprocess``: ``asap.optimize(..., isolate=False)`` (trials in this process, as Optuna);
- ``asap-fresh``: a fresh worker process per trial (``reuse_workers=False``);
- ``asap-eips``: ``llm=False, cost_weight=1`` (expected improvement per predicted second);
- ``asap-2workers`` / ``optuna-tpe-2jobs``: two trials at a time, ``asap.optimize(...,
  workers=2)`` against ``study.optimize(..., n_jobs=2)`` (Optuna's threads);
  ``asap-2workers-unordered``: ``workers=2, in_order=False`` (each result taken as it ends, no
  worker waiting for an earlier trial; the run then depends on timing);
- ``asap-nodesign``: ``design=None`` (the panel alone in the initial design, no Sobol points).

Printed per objective and method: total wall-clock (median and range; asap's includes starting
its LLM server and worker) and its ratio to Optuna TPE's, as the medians' ratio and paired by
seed (the geometric mean of the per-seed ratios, with a 95 % bootstrap CI), the time to reach
Optuna TPE's median final best (the time by which half the repeats had; "-" when fewer than half got there; with an even number of repeats
the target is the upper median, the best value half of TPE's runs reached, so TPE's own
median run reaches it), the final best (median and range), the re-run of each run's best
configuration (its mean over three fresh seeds, after the run and untimed; median and mean over
the repeats: the worth of what a method returned, as a single draw is not), the summed
training time of the trials (what the configurations picked cost, apart from the tuner's own
time), and asap's split of its wall-clock (training, exposed LLM, tools and prior on the
critical path, worker start-up, the rest), then each method's ratios to Optuna TPE. ``--out``
keeps every run as JSON.

    python evals/bench_real.py --repeats 5 --trials 30

Not a test: the numbers depend on the machine (docs/evaluation.md has what was measured).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from asap.evals.metrics import bootstrap_ci
from asap.evals.objectives import TASKS, Task

METHODS = ("optuna-tpe", "optuna-cmaes", "asap", "asap-nollm", "asap-serial", "asap-inprocess",
           "asap-fresh", "asap-eips", "asap-2workers", "asap-2workers-unordered",
           "optuna-tpe-2jobs", "asap-nodesign")
# asap's settings per method: its defaults, without the LLM, one worker, in this process
# (isolate=False: no worker process, as Optuna runs an objective), a fresh worker process per
# trial, the prior ranking by expected improvement per predicted second (without the LLM), two
# trials at a time (each worker at half the cores), taken in the order they started or as they
# end; no Sobol points in the initial design.
SETTINGS = {"asap": {}, "asap-nollm": {"llm": False}, "asap-serial": {"workers": 1},
            "asap-inprocess": {"isolate": False}, "asap-fresh": {"reuse_workers": False},
            "asap-eips": {"llm": False, "cost_weight": 1.0}, "asap-2workers": {"workers": 2},
            "asap-2workers-unordered": {"workers": 2, "in_order": False},
            "asap-nodesign": {"design": None}}
RERUN_SEEDS = (101, 102, 103)  # the seeds each run's best configuration is re-run with
PARTS = ("train_s", "exposed_llm_s", "tools_s", "startup_s", "other_s")


def run_optuna(task: Task, method: str, trials: int, seed: int) -> dict[str, Any]:
    """One Optuna study, in-process; each trial's end as seconds since the call."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.TPESampler(seed=seed) if method.startswith("optuna-tpe")
               else optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False))
    start = time.time()
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(task.optuna_objective(), n_trials=trials,
                   n_jobs=2 if method == "optuna-tpe-2jobs" else 1)
    wall = time.time() - start
    ends = [(t.datetime_complete.timestamp() - start, t.value) for t in study.trials
            if t.value is not None]
    train = sum(t.duration.total_seconds() for t in study.trials if t.duration is not None)
    return {"wall_s": wall, "best": study.best_value, "ends": ends, "train_s": train,
            "first_trial_s": study.trials[0].datetime_start.timestamp() - start,
            "best_config": study.best_params}


def run_asap(task: Task, method: str, trials: int, seed: int, db: str) -> dict[str, Any]:
    """One ``asap.optimize`` call as a user makes it; its split from the ledger."""
    import asap
    from asap.tools.ledger.store import Ledger

    name = f"{task.name}-{method}-s{seed}"
    start = time.time()
    result = asap.optimize(task.objective, task.space, n_trials=trials, direction="maximize",
                           seed=seed, db=db, study=name, show_progress_bar=False,
                           **SETTINGS[method])
    wall = time.time() - start
    study = Ledger(db, readonly=True).open_study(name)
    done = study.trials(status="complete")
    ends = [(t.ended_at - start, t.value) for t in done]
    split = split_of(study, wall)
    train = sum(t["end"] - t["start"] for t in study.timings("train"))  # summed, as Optuna's
    return {"wall_s": wall, "best": result.best_value, "ends": ends, "train_s": train,
            "split": split, "llm_calls": result.summary.llm_calls,
            "first_trial_s": min(t.started_at for t in study.trials()) - start,
            "best_config": result.best_params}


def rerun(task: Task, config: dict[str, Any], seeds: tuple[int, ...] = RERUN_SEEDS) -> float:
    """The returned configuration's worth: its mean over fresh runs, the global generators
    seeded alike for every method. What a trial observed is one draw (the MLP's initial
    weights), and the best of 30 draws is biased upwards by however many good ones a method
    tried; the re-run says how good the configuration each method returned is."""
    from asap.tools.trials.workers import seed_globals

    values = []
    for seed in seeds:
        seed_globals(seed)
        values.append(task.objective(config, None))
    return statistics.fmean(values)


def split_of(study: Any, wall: float) -> dict[str, float]:
    """asap's wall-clock in parts that add up to the call's: the ledger's decomposition, and
    what the call spent outside its session (imports, the LLM server's start) as start-up."""
    from asap.agent.report.stats import decompose

    d = decompose(study)
    parts = {p: d[p] for p in PARTS}
    parts["startup_s"] += max(0.0, wall - d["wall_s"])
    return parts


def time_to(ends: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the best so far first reached ``target`` (maximized); None if never."""
    for at, value in sorted(ends):
        if value >= target - 1e-12:
            return at
    return None


def median_time(times: list[float | None]) -> float | None:
    """The time by which half the runs had got there (the lower median, "never" as infinity);
    None when fewer than half got there."""
    ordered = sorted(float("inf") if t is None else t for t in times)
    mid = statistics.median_low(ordered)
    return None if mid == float("inf") else mid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="gbc_cancer,svc_digits,mlp_digits",
                    help=f"comma-separated, from {sorted(TASKS)}")
    ap.add_argument("--methods", default="optuna-tpe,optuna-cmaes,asap,asap-nollm")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="the first repeat's seed (repeat r runs seed FIRST + r)")
    ap.add_argument("--out", help="write every run as JSON here")
    args = ap.parse_args()
    console = Console(stderr=True)
    imports = {}  # once per process, as a user's script pays them: not part of any run
    for module in ("optuna", "asap.graphs.api"):
        start = time.perf_counter()
        importlib.import_module(module)
        imports[module] = time.perf_counter() - start
    console.print("imported before the runs: " + ", ".join(
        f"{m} {s:.2f} s" for m, s in imports.items()))
    tasks = [TASKS[t] for t in args.tasks.split(",")]
    methods = args.methods.split(",")
    db = str(Path(tempfile.mkdtemp()) / "bench.db")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {t.name: {m: [] for m in methods}
                                                         for t in tasks}
    for task in tasks:
        for rep in range(args.repeats):
            order = methods[rep % len(methods):] + methods[:rep % len(methods)]
            seed = args.first_seed + rep
            for method in order:  # alternated, and rotated so no method always goes first
                console.print(f"{task.name} repeat {rep} (seed {seed}): {method}")
                run: Callable[..., dict[str, Any]] = (
                    run_optuna if method.startswith("optuna") else
                    lambda *a: run_asap(*a, db=db))
                done = run(task, method, args.trials, seed)
                done["rerun"] = rerun(task, done["best_config"])  # after the run: not timed
                runs[task.name][method].append({**done, "seed": seed})
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=1))
    for task in tasks:
        Console(width=200).print(report(task.name, runs[task.name], args.trials))


def rerun_cell(runs: list[dict[str, Any]]) -> str:
    """The re-run worth of the configurations a method returned: median and mean ("-" for
    runs recorded before re-runs were)."""
    values = [r["rerun"] for r in runs if "rerun" in r]
    return f"{statistics.median(values):.4f} / {statistics.fmean(values):.4f}" if values else "-"


def paired_ratio(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    """Wall-clock against Optuna TPE's run with the same seed: the geometric mean of the
    per-seed ratios and its 95 % bootstrap CI ("-" without two seeds in common). The seed
    moves a run's wall-clock more than the method does (which configurations get drawn), so
    the medians' ratio alone cannot say whether a gap is the method's."""
    by_seed = {r.get("seed"): r["wall_s"] for r in base}
    logs = [math.log(r["wall_s"] / by_seed[r.get("seed")]) for r in runs
            if r.get("seed") is not None and by_seed.get(r.get("seed"))]
    if len(logs) < 2:
        return "-"
    mean, low, high = (math.exp(v) for v in bootstrap_ci(logs))
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def report(name: str, runs: dict[str, list[dict[str, Any]]], trials: int) -> Table:
    """One objective's table: each method's wall-clock, time to target, best, split, ratios."""
    base = runs.get("optuna-tpe") or next(iter(runs.values()))
    target = statistics.median_high(r["best"] for r in base)  # half of TPE's runs reached it
    base_wall = statistics.median(r["wall_s"] for r in base)
    base_tt = median_time([time_to(r["ends"], target) for r in base])
    base_train = statistics.median(r["train_s"] for r in base)
    table = Table("method", "wall s (median, range)", "x TPE", "x TPE paired (95% CI)",
                  "to target s", "x TPE",
                  "best (median, range)", "re-run", "training s", "x TPE",
                  "train / LLM / tools / start-up / other",
                  "first trial s", "LLM calls", title=f"{name}: {trials} trials, {len(base)} repeats; target = "
                  f"Optuna TPE's median final best {target:.4f}")
    for method, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        bests = [r["best"] for r in rs]
        tt = median_time([time_to(r["ends"], target) for r in rs])
        wall = statistics.median(walls)
        train = statistics.median(r["train_s"] for r in rs)
        split = "-"
        if "split" in rs[0]:
            shares = {p: statistics.median(r["split"][p] / r["wall_s"] for r in rs)
                      for p in PARTS}
            split = " / ".join(f"{shares[p]:.0%}" for p in PARTS)
        table.add_row(
            method, f"{wall:.1f} ({min(walls):.1f}-{max(walls):.1f})", f"{wall / base_wall:.2f}",
            paired_ratio(rs, base),
            "-" if tt is None else f"{tt:.1f}",
            "-" if tt is None or not base_tt else f"{tt / base_tt:.2f}",
            f"{statistics.median(bests):.4f} ({min(bests):.4f}-{max(bests):.4f})",
            rerun_cell(rs),
            f"{train:.1f}", f"{train / base_train:.2f}", split,
            f"{statistics.median(r['first_trial_s'] for r in rs):.2f}",
            str(statistics.median(r.get("llm_calls", 0) for r in rs)))
    return table


if __name__ == "__main__":
    main()
