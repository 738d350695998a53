"""N trials in flight against one, side by side in one run, on the embedded LLM.

For each worker count and seed, one tuning session of the same trial budget on a simulated-clock
table (trials sleep the table's ``train_time`` times ``--time-scale``), all on one embedded
llama.cpp server started once. Prints per worker count: wall-clock to finish (median over seeds
and its ratio to the first count), training seconds (the union of trial intervals), the exposed
LLM share (LLM time with no trial running: every worker idle, waiting on the agent), the agent's
own overhead per trial (neither LLM nor objective), and the quality reached: the table's mean
over its training seeds for each run's best configuration, as normalized regret to the table's
optimum (mean and spread over seeds), so equal trials are compared honestly.

    python evals/bench_workers.py --workload nasbench201:cifar10 --time-scale 0.002 \\
        --trials 16 --seeds 5 --workers 1,2

Not a test: the numbers depend on the machine. NAS-Bench-201's ``train_time`` spans 0.7-3 k
seconds (x0.002: 1.5-6 s a trial), narrower than HPOBench's (0.1 s to 22 min), so wall-clock
differences come from the workers, not from which configurations a run happened to draw.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asap.agent.config import TuneConfig
from asap.agent.llm.server import endpoint
from asap.agent.report.stats import decompose
from asap.evals.metrics import normalized_regret
from asap.graphs.session import tune
from asap.tools.ledger.store import Ledger
from asap.tools.workloads import resolve
from asap.tools.workloads.tabular import extremes, true_mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="nasbench201:cifar10")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--time-scale", type=float, default=0.002)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    ap.add_argument("--speculation", default="auto")
    ap.add_argument("--db", help="ledger to keep (default: a temporary file)")
    args = ap.parse_args()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO line per in-memory study
    console = Console(stderr=True)
    db = args.db or str(Path(tempfile.mkdtemp()) / "bench.db")
    wl = resolve(args.workload)
    bench, dataset = wl.kwargs["bench"], wl.kwargs["dataset"]
    optimum, worst = extremes(bench, dataset)
    counts = [int(n) for n in args.workers.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    with contextlib.ExitStack() as stack:
        base_url, model = endpoint(stack, None, None, say=console.print)
        for seed in range(args.seeds):
            for n in counts:  # interleaved: drift in the machine's load hits every count alike
                name = f"w{n}-s{seed}"
                console.rule(f"{n} worker(s), seed {seed}: {args.trials} trials of {args.workload}")
                cfg = TuneConfig(workload=args.workload, trials=args.trials, db=db, study=name,
                                 time_scale=args.time_scale, seed=seed, workers=n,
                                 base_url=base_url, model=model, speculation=args.speculation)
                summary = tune(cfg)
                study = Ledger(db).open_study(name)
                d = decompose(study)
                best = study.best()
                worth = true_mean(bench, dataset, best.config) if best else None
                runs[n].append({**d, "trials": summary["trials"],
                                "regret": normalized_regret(worth, optimum, worst)})
    first = statistics.median(r["wall_s"] for r in runs[counts[0]])
    table = Table("workers", "runs", "wall-clock s (median)", f"vs {counts[0]}", "training s",
                  "exposed LLM", "agent overhead / trial", "regret (mean ± sd)",
                  title=f"{args.workload}, {args.trials} trials, time-scale {args.time_scale:g}, "
                        f"{args.seeds} seeds (ledger {db})")
    for n, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        regrets = [r["regret"] for r in rs if r["regret"] is not None]
        overhead = statistics.median((r["tools_s"] + r["other_s"]) / r["trials"] for r in rs)
        table.add_row(str(n), str(len(rs)), f"{wall:.1f}", f"{wall / first:.2f}x",
                      f"{statistics.median(r['train_s'] for r in rs):.1f}",
                      f"{statistics.median(r['exposed_share'] for r in rs):.1%}",
                      f"{overhead * 1000:.0f} ms",
                      f"{statistics.mean(regrets):.4f} ± {statistics.pstdev(regrets):.4f}"
                      if regrets else "-")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
