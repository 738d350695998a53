"""Benchmark of the tuning core (not a test): trial wall-clock and tool suggest latency.

Prints, in one run:
- the wall-clock of one ``digits-mlp`` trial at its default fidelity and of one ``charlm`` trial;
- for every tool, the time to suggest one config with 10, 100 and 500 finished trials in the
  ledger: "cold" (a new process: rebuild the tool's state from the ledger, then ask) and "warm"
  (the tool already in sync, one new trial told, then ask);
- the agent's own time per round at 40, 100 and 300 trials, side by side: sessions with no LLM
  (the prior decides) on a table lookup (``hpobench:australian``, in-process), the median and
  90th percentile of the critical path between a trial's end and the next one's start over the
  last quarter of the session (the round cost at that size), the panel's asks plus the prior's
  share of it, and issue 28's targets (<= 50 ms at 40 trials, <= 150 ms at 300).

Run: ``python evals/bench_core.py [--sizes 10 100 500] [--skip-training]
[--overhead-trials 40 100 300]``
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asap.tools.hpo.nevergrad_tool import NevergradOptimizer
from asap.tools.hpo.optuna_tool import OptunaOptimizer
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.ledger.store import Ledger
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve

TOOLS = [("optuna", a) for a in OptunaOptimizer.algorithms] + [
    ("nevergrad", a) for a in NevergradOptimizer.algorithms]


def _fill(study, n: int, seed: int = 0) -> None:
    """n finished trials with random valid configs and a synthetic objective (fast to make)."""
    portfolio = Portfolio(study, seed=seed)
    rng = random.Random(seed)
    for cfg in portfolio.ask("optuna", "random", n):
        tid = study.start_trial(cfg, tool="bench")
        study.finish_trial(tid, status="complete", metrics={study.metric: rng.random()})


def bench_suggest(sizes: list[int]) -> Table:
    space = resolve("digits-mlp").space
    table = Table(title="suggest latency, seconds (digits-mlp space, 9 params, 2 conditional)")
    table.add_column("tool", no_wrap=True)
    for n in sizes:
        table.add_column(f"cold @{n}", justify="right")
        table.add_column(f"warm @{n}", justify="right")
    rows = {t: [] for t in TOOLS}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            study = Ledger(Path(tmp) / f"b{n}.db").create_study(
                "b", space, metric="val_accuracy", direction="maximize")
            _fill(study, n)
            for tool in TOOLS:
                portfolio = Portfolio(study, seed=1)
                t0 = time.perf_counter()
                portfolio.ask(*tool, n=1)
                cold = time.perf_counter() - t0
                cfg = portfolio.ask("optuna", "random", 1)[0]
                tid = study.start_trial(cfg, tool="bench")
                study.finish_trial(tid, status="complete", metrics={"val_accuracy": 0.5})
                t0 = time.perf_counter()
                portfolio.ask(*tool, n=1)
                warm = time.perf_counter() - t0
                rows[tool] += [f"{cold:.3f}", f"{warm:.3f}"]
    for tool, cells in rows.items():
        table.add_row(":".join(tool), *cells)
    return table


def bench_training() -> Table:
    table = Table(title="one trial, wall-clock seconds (worker process, this machine)")
    for col in ("workload", "fidelity", "seconds", "value"):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "t.db")
        cases = [("digits-mlp", {"lr": 0.003, "weight_decay": 1e-4, "width": 64, "depth": 2,
                                 "dropout": 0.1, "batch_size": 32, "optimizer": "adam", "beta1": 0.9}),
                 ("charlm", {"lr": 3e-3, "warmup": 50, "width": 128, "layers": 2, "heads": 4,
                             "dropout": 0.1})]
        for ref, cfg in cases:
            wl = resolve(ref)
            study = ledger.create_study(ref, wl.space, metric=wl.metric, direction=wl.direction)
            trainer = Trainer(study, wl)
            trainer.run(cfg, tool="warmup", fidelity=1)  # start the fork server once
            t0 = time.perf_counter()
            trial = trainer.run(cfg, tool="bench")
            table.add_row(ref, str(wl.default_fidelity), f"{time.perf_counter() - t0:.1f}",
                          f"{trial.value:.4f}" if trial.value is not None else trial.error)
    return table


TARGETS_MS = {40: 50.0, 300: 150.0}  # median round overhead, issue 28 (idle machine)


def bench_overhead(sizes: list[int]) -> Table:
    """The agent's own time per round, with no LLM: the critical path between one trial's end
    and the next one's start (the panel's asks, the prior and its cost model, the graph and
    the ledger), in a session of ``n`` trials on a table lookup (in-process, ~1 ms)."""
    import statistics

    from asap.agent.config import TuneConfig
    from asap.graphs.session import tune
    table = Table(title="the agent's own time per round (hpobench:australian, no LLM, the "
                        "session's defaults), milliseconds")
    for col in ("trials", "median round", "p90 round", "of which tools + prior (median)",
                "target (median)"):
        table.add_column(col, justify="right")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TuneConfig(workload="hpobench:australian", trials=n, llm=False, isolate=False,
                             db=str(Path(tmp) / "o.db"), study="o")
            tune(cfg)
            study = Ledger(cfg.db).open_study("o")
            trains = sorted(study.timings("train"), key=lambda r: r["start"])
            gaps = [b["start"] - a["end"] for a, b in zip(trains, trains[1:], strict=False)]
            tools = [r["duration"] for r in study.timings("tool_call")]
        last = gaps[-max(1, len(gaps) // 4):]  # the round cost at n trials: the last quarter
        target = TARGETS_MS.get(n)
        table.add_row(str(n), f"{statistics.median(last) * 1000:.0f}",
                      f"{statistics.quantiles(last, n=10)[-1] * 1000:.0f}" if len(last) > 1
                      else "-", f"{statistics.median(tools[-len(last):]) * 1000:.0f}",
                      f"<= {target:.0f}" if target else "-")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--overhead-trials", type=int, nargs="+", default=[40, 100, 300])
    args = ap.parse_args()
    console = Console(width=140)
    if not args.skip_training:
        console.print(bench_training())
    console.print(bench_suggest(args.sizes))
    console.print(bench_overhead(args.overhead_trials))


if __name__ == "__main__":
    main()
