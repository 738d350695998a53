"""Ablations of the agent's system techniques, side by side in one run.

Runs the same workload and trial budget with: everything on; speculation off; the naive prompt;
self-tuning off; and the serial naive-prompt loop (no technique), each on the embedded LLM, and
prints wall-clock to finish, exposed LLM share, cached-token share, accept rate, best value and
each variant's wall-clock relative to the serial naive loop; then, per variant, the decisions'
latency (median, p90, the last ten decisions' median against the first ten after the cold
first call), decoded tokens, and the cached share by kind of call (critical, speculative,
warm-up).

    python evals/bench_agent.py --workload hpobench:australian --time-scale 0.5 --trials 30
    python evals/bench_agent.py --workload digits-mlp --trials 30
    python evals/bench_agent.py --workload digits-mlp --trials 5 --time-scale 0 \
        --variants "defaults,as before 28" --repeat 3   # the README quickstart, before/after

Not a test: numbers depend on the machine. On a CPU-only host the embedded LLM and torch
training share the cores, so speculation on ``digits-mlp`` measures contention as much as
overlap; the tabular workloads' simulated clock (sleep) does not compete for the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asap.agent.config import TuneConfig
from asap.agent.report.stats import decision_calls, decompose
from asap.graphs.session import tune
from asap.tools.ledger.store import Ledger

VARIANTS = {
    "defaults": dict(),  # what `asap tune` does (speculation auto: off when the LLM shares the CPU)
    # The defaults before issue 28: the LLM asked from the first round, one answer per round,
    # one proposal per tool, expected improvement alone.
    "as before 28": dict(llm_after=0, plan=1, width=1, cost_weight=0.0),
    "all on": dict(speculation="threshold", prompt="stable", selftune=True),
    "full proposals": dict(speculation="threshold", prompt="stable", selftune=True,
                           proposals="full"),
    "ahead off": dict(speculation="threshold", prompt="stable", selftune=True,
                      decide_ahead=False),
    "speculation off": dict(speculation="off", prompt="stable", selftune=True),
    "naive prompt": dict(speculation="threshold", prompt="naive", selftune=True),
    "self-tuning off": dict(speculation="threshold", prompt="stable", selftune=False),
    "serial naive": dict(speculation="off", prompt="naive", selftune=False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="hpobench:australian")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--time-scale", type=float, default=0.5)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--db", help="ledger to keep (default: a temporary file)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per variant, the variants alternating (the table: medians)")
    args = ap.parse_args()
    console = Console(stderr=True)
    db = args.db or str(Path(tempfile.mkdtemp()) / "bench.db")
    runs: dict[str, list] = {}
    for rep in range(args.repeat):
        for name in args.variants.split(","):
            study = name.replace(" ", "-") + (f"-{rep}" if rep else "")
            cfg = TuneConfig(workload=args.workload, trials=args.trials, db=db, study=study,
                             time_scale=args.time_scale, **VARIANTS[name])
            console.rule(f"{name}: {args.trials} trials of {args.workload} (run {rep + 1})")
            summary = tune(cfg)
            runs.setdefault(name, []).append(
                (summary, decompose(Ledger(db).open_study(cfg.study_name))))
    rows = {name: got[len(got) // 2] for name, got in runs.items()}  # shown: the median-ish run
    base = median(runs.get("serial naive", next(iter(runs.values()))), "wall_s")
    table = Table("variant", "wall-clock s", "vs " + ("serial naive" if "serial naive" in runs
                                                      else next(iter(runs))),
                  "training s", "exposed LLM", "cached", "accept", "wasted s", "best",
                  title=f"{args.workload}, {args.trials} trials, median of {args.repeat} "
                        f"run(s) (ledger {db})")
    for name, got in runs.items():
        exposed = [d["exposed_share"] for _, d in got if d["exposed_share"] is not None]
        best = [s["best_value"] for s, _ in got if s["best_value"] is not None]
        table.add_row(name, f"{median(got, 'wall_s'):.1f}", f"{median(got, 'wall_s') / base:.2f}x",
                      f"{median(got, 'train_s'):.1f}",
                      pct(statistics.median(exposed) if exposed else None),
                      pct(rows[name][1]["cached_share"]), pct(rows[name][1]["accept_rate"]),
                      f"{median(got, 'wasted_s'):.1f}",
                      f"{statistics.median(best):.4f}" if best else "-")
    Console(width=200).print(table)
    calls = Table("variant", "decisions", "median s", "p90 s", "last 10 / first 10",
                  "completion tokens", "cached: critical", "speculative", "warm-up (calls)",
                  title="LLM calls")
    for name, (_, d) in rows.items():
        study = Ledger(db).open_study(name.replace(" ", "-"))
        lat = decision_latencies(study)
        kinds = d["calls"]
        warm = kinds.get("warm-up")
        calls.add_row(name, str(len(lat)), f"{statistics.median(lat):.2f}" if lat else "-",
                      f"{sorted(lat)[int(0.9 * (len(lat) - 1))]:.2f}" if lat else "-",
                      f"{statistics.median(lat[-10:]) / statistics.median(lat[1:11]):.2f}x"
                      if len(lat) > 11 else "-",
                      _get(kinds, "critical", "completion_tokens", "{:.0f}"),
                      _get(kinds, "critical", "cached_share", "{:.1%}"),
                      _get(kinds, "speculative", "cached_share", "{:.1%}"),
                      "-" if warm is None else f"{pct(warm['cached_share'])} ({warm['calls']})")
    Console(width=200).print(calls)


def median(got: list, key: str) -> float:
    """The median over runs of one decomposition number."""
    return statistics.median(d[key] for _, d in got)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def decision_latencies(study) -> list[float]:
    """Every decision call's latency in order (critical and speculative; no warm-ups, no
    cancelled or failed calls)."""
    return [c["duration"] for c in decision_calls(study.timings("llm_call"))]


def _get(kinds: dict, kind: str, key: str, spec: str) -> str:
    value = kinds.get(kind, {}).get(key)
    return "-" if value is None else spec.format(value)


if __name__ == "__main__":
    main()
