"""N trials in flight against one, on the virtual clock: is N workers N times sooner, as good?

For each worker count, the same grid (tasks x methods x seeds, each run a fixed number of trials
within the task's simulated budget) runs on the virtual clock, each worker count into a ledger of
its own: every trial is charged its table's ``train_time`` and N of them are in flight at once,
so the scheduling and the decisions under trials in flight are measured, not this machine's
speed. Printed per method and worker count, as medians over the runs (tasks x seeds):

- span: the last trial's end minus the first one's start (simulated), and its ratio to the same
  run with one worker (the ideal is 1/N): median, mean and 90th percentile, since one trial of
  a table can cost hours and a run's ratio is heavy-tailed, and the ratio of the summed spans
  (a cheap run's ratio weighs what its minutes weigh in a user's hours);
- training: the trials' summed training time, as a ratio to one worker's (the same number of
  trials should cost the same whatever N): median and mean of the runs' ratios, and the ratio
  of the totals over all runs;
- busy: the share of the N workers' span spent training;
- regret at equal time: with N workers at a time T/N, against one worker at T (T: the
  one-worker run's span), the table's mean for each incumbent as normalized regret, as the mean
  paired difference with its 95 % bootstrap interval (negative: N workers are at least as good);
- the floor ("1, next seed"): each one-worker run against the one-worker run of the next seed
  on its task. Two runs whose trajectories part (another seed's draws, or results landing in
  another order with N workers) differ by this much however well they are scheduled, so a
  per-run mean or p90 near it says the runs parted, not that N workers were slow.

``asap`` (its LLM on the embedded server), ``prior`` (its decision without the LLM) and asap's
tools alone (``cmaes``, ``tpe``: their Optuna samplers, with the running trials as pending, as
Optuna's ``n_jobs`` runs them) are methods of the eval (:mod:`asap.evals.methods`).

``--backend ray`` runs asap's trials as Ray tasks, on a local Ray instance or on the cluster
``--ray-address`` names (compare with ``--backend local``). On the virtual clock each table
lookup is a Ray task and the clock waits for every result before it schedules the landing, so
N workers are simulated whatever CPUs the Ray instance has: what differs from local workers is
Ray's dispatch and results, not the machine. ``--time-scale S`` runs on the real clock instead,
each trial sleeping its table's time times S (there N workers need N CPUs).

    python evals/bench_workers.py --workers 1,2,4,8 --seeds 10 --trials 40
    python evals/bench_workers.py --methods prior --workers 1,4,8 --backend ray

Not a test: docs/evaluation.md has what was measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, get_args

from rich.console import Console
from rich.table import Table

from asap.agent.config import Backend
from asap.evals.grid import TASKS, Grid, run_grid
from asap.evals.metrics import bootstrap_ci
from asap.evals.results import CellResult, collect
from asap.tools.ledger.store import Ledger

DEV = TASKS[:5]  # the dev profile's tables


def clock_of(time_scale: float) -> str:
    """The clock a grid runs on: virtual (no sleeping), or real with trials sleeping their
    table's time times ``time_scale``."""
    return "real" if time_scale > 0 else "virtual"


def run_counts(tasks: list[str], methods: list[str], seeds: int, trials: int,
               counts: list[int], folder: Path, time_scale: float = 0.0,
               backend: str = "local", ray_address: str | None = None) -> dict[int, Ledger]:
    """Each worker count's grid in ``folder/w<N>.db`` (cells already done there are kept: a
    cut-off run resumes): on the virtual clock, or with ``time_scale`` > 0 on the real one,
    each trial sleeping its table's time times the scale (where ``backend`` "ray" runs asap's
    trials as Ray tasks, on the cluster at ``ray_address`` or a local instance)."""
    console = Console(stderr=True)
    ledgers = {}
    clock = clock_of(time_scale)
    for n in counts:
        grid = Grid(tasks=tasks, methods=methods, seeds=seeds, trials=trials,
                    time_scale=time_scale, clock=clock, workers=n, backend=backend,
                    ray_address=ray_address, db=str(folder / f"w{n}.db"))
        console.print(f"[bold]{n} worker(s):[/] {grid.describe()}")
        ledgers[n] = run_grid(grid)
    return ledgers


def measure(ledger: Ledger, cell: CellResult, workers: int) -> dict[str, Any]:
    """One run's span, summed training and busy share, from its trials in the ledger."""
    trials = [t for t in ledger.open_study(cell.id).trials()
              if t.status != "running" and t.ended_at is not None]
    span = max(t.ended_at for t in trials) - min(t.started_at for t in trials)
    train = sum(t.duration or 0.0 for t in trials)
    return {"span": span, "train": train, "busy": train / (workers * span) if span else 1.0,
            "cell": cell}


def report(ledgers: dict[int, Ledger], counts: list[int], clock: str = "virtual") -> Table:
    """The table: per method and worker count, ratios to the same run with one worker, on the
    ``clock`` the grids ran on."""
    runs: dict[int, dict[tuple[str, str, int], dict[str, Any]]] = {}
    for n, ledger in ledgers.items():
        runs[n] = {(c.method, c.task, c.seed): measure(ledger, c, n) for c in collect(ledger)}
    base = runs[counts[0]]
    table = Table("method", "workers", "runs", "span ratio: median / mean / p90 / of the totals",
                  "target", "training ratio: median / mean / of the totals", "busy (median)",
                  "regret at T/N minus one worker's at T (mean, 95% CI)",
                  title=f"{clock} clock: ratios to {counts[0]} worker(s), same task and seed")
    by_method: dict[str, list[int]] = defaultdict(list)
    for n in counts:
        for key in runs[n]:
            if key in base and n not in by_method[key[0]]:
                by_method[key[0]].append(n)
    for method, ns in by_method.items():
        for n in ns:
            pairs = [(r, base[k]) for k, r in runs[n].items() if k[0] == method and k in base]
            diff = [r["cell"].regret_at(b["span"] * counts[0] / n) - b["cell"].regret_at(b["span"])
                    for r, b in pairs]
            mean, lo, hi = bootstrap_ci(diff)
            count, span, train, busy = _ratios(pairs)
            table.add_row(method, str(n), count, span, f"<= {1.25 * counts[0] / n:.2f}", train,
                          busy, f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        if len(pairs := _another_seed(base, method)) > 1:  # the floor under those ratios
            count, span, train, busy = _ratios(pairs)
            table.add_row(method, f"{counts[0]}, next seed", count, span, "-", train, busy, "-")
    return table


def _ratios(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[str, str, str, str]:
    """The cells of (run, reference) pairs: how many, the span ratios, the training ratios,
    and the runs' median busy share."""
    span = [r["span"] / b["span"] for r, b in pairs if b["span"]]
    train = [r["train"] / b["train"] for r, b in pairs if b["train"]]
    spans = sum(r["span"] for r, _ in pairs) / sum(b["span"] for _, b in pairs)
    total = sum(r["train"] for r, _ in pairs) / sum(b["train"] for _, b in pairs)
    return (str(len(pairs)),
            f"{statistics.median(span):.2f} / {statistics.mean(span):.2f} / {p90(span):.2f} / "
            f"{spans:.2f}",
            f"{statistics.median(train):.2f} / {statistics.mean(train):.2f} / {total:.2f}",
            f"{statistics.median(r['busy'] for r, _ in pairs):.2f}")


def _another_seed(base: dict[tuple[str, str, int], dict[str, Any]], method: str
                  ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each base run against the base run of the next seed on its task (the last against the
    first): how far two runs that differ only in their seed's draws are apart. The floor under
    a run's ratio to the same seed with one worker, which differs from it in the same way once
    a result lands in another order."""
    seeds: dict[str, list[int]] = defaultdict(list)
    for m, task, seed in sorted(base):
        if m == method:
            seeds[task].append(seed)
    return [(base[(method, task, s)], base[(method, task, ss[(i + 1) % len(ss)])])
            for task, ss in seeds.items() if len(ss) > 1 for i, s in enumerate(ss)]


def p90(values: list[float]) -> float:
    """The 90th percentile: a run's ratio is heavy-tailed (one trial of a table can cost
    hours), so the median alone hides the runs where N workers bought a straggler."""
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(DEV), help="comma-separated tabular tasks")
    ap.add_argument("--methods", default="prior,cmaes,tpe", help="eval methods to compare")
    ap.add_argument("--workers", default="1,2,4,8", help="worker counts; the first is the base")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--dir", help="folder for the ledgers (default: a temporary one); a run "
                                  "cut off resumes there")
    ap.add_argument("--time-scale", type=float, default=0.0,
                    help="0: the virtual clock; > 0: the real clock, each trial sleeping its "
                         "table's time x this")
    ap.add_argument("--backend", choices=get_args(Backend), default="local",
                    help="ray: asap's trials as Ray tasks on a local Ray instance (real clock)")
    ap.add_argument("--ray-address", help="with --backend ray: a running Ray cluster "
                    "(HOST:PORT) instead of a local instance, e.g. one started with "
                    "`ray start --head --num-cpus 8` to run 8 sleeping trials on fewer cores")
    args = ap.parse_args()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO line per in-memory study
    folder = Path(args.dir or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.workers.split(",")]
    ledgers = run_counts(args.tasks.split(","), args.methods.split(","), args.seeds,
                         args.trials, counts, folder, args.time_scale, args.backend,
                         args.ray_address)
    Console(width=200).print(report(ledgers, counts, clock_of(args.time_scale)))
    Console(stderr=True).print(f"ledgers in {folder}")


if __name__ == "__main__":
    main()
