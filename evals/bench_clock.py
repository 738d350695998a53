"""Benchmark of the virtual clock (not a test): what simulating hours costs in real time.

Prints, side by side in one run, the real seconds of a ``--trials`` run of each no-LLM method on
a table with the virtual clock (every trial charged its ``train_time``, the method's own time
charged too) and with no clock at all (``time_scale`` 0: trials take no time), seeds
interleaved so that both see the same machine load, and their ratio (target: <= 1.10); and the
simulated hours the virtual runs covered.

Run: ``python evals/bench_clock.py [--task hpobench:australian] [--methods tpe prior]
[--trials 40] [--seeds 10]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asap.evals.grid import Grid, run_grid
from asap.tools.ledger.store import Ledger


def one(task: str, method: str, seed: int, trials: int, clock: str, db: Path) -> float:
    """Real seconds of one run (a single-cell grid: the eval's own code path)."""
    grid = Grid(tasks=[task], methods=[method], seeds=seed + 1, trials=trials, time_s=1e9,
                time_scale=0.0, clock=clock, db=str(db))
    start = time.perf_counter()
    run_grid(grid)  # earlier seeds are done already: only seed ``seed`` runs
    return time.perf_counter() - start


def main() -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="hpobench:australian")
    p.add_argument("--methods", nargs="+", default=["tpe", "prior"])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--seeds", type=int, default=10)
    args = p.parse_args()
    table = Table("method", "no clock (s, median)", "virtual clock (s, median)", "ratio",
                  "simulated hours (median)", title=f"{args.trials} trials of {args.task}, "
                  f"{args.seeds} seeds interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            secs: dict[str, list[float]] = {"real": [], "virtual": []}
            for seed in range(args.seeds):
                for clock in ("real", "virtual")[::1 if seed % 2 else -1]:  # either first
                    secs[clock].append(one(args.task, method, seed, args.trials, clock,
                                           Path(tmp) / f"{clock}.db"))
            ledger = Ledger(Path(tmp) / "virtual.db")
            sim = [max(t.ended_at for t in ledger.open_study(name).trials())
                   - min(t.started_at for t in ledger.open_study(name).trials())
                   for name in ledger.study_names() if f".{method}." in name]
            a, b = statistics.median(secs["real"]), statistics.median(secs["virtual"])
            table.add_row(method, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}",
                          f"{statistics.median(sim) / 3600:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
