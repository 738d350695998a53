"""Run a grid of tasks x methods x seeds, one study per cell, resumable, with a progress bar.

Cells are rows of the ``eval_cells`` table in the eval's ledger (sqlite-utils). A re-run skips
cells marked done; a cell that was cut off (its row says running) is deleted with its study and
run again, so every finished cell ran from scratch under the same budget. LLM methods share one
endpoint: the embedded server, started once for the grid, unless ``base_url`` names one.

On the virtual clock (``clock="virtual"``) a run goes on until its simulated time budget is spent
(by default the largest budget the report reads for its task, :data:`SIM_BUDGETS`), with the
trial budget as a cap on the real cost; the report reads both axes from the same runs: regret
at ``at_trials`` trials and at each simulated budget. There ``jobs`` cells run side by side, in
processes of their own: what a cell reports is simulated, so cells beside each other change
only the few real seconds of agent time its clock charges; on the real clock, where the
wall-clock is what a cell measures, they run one at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import get_args

from asap.agent.config import Backend
from asap.agent.llm.server import endpoint
from asap.evals.methods import LLM_METHODS, METHODS, SESSION_METHODS, Cell
from asap.evals.smac_peer import check_installed
from asap.tools.ledger.store import Ledger
from asap.tools.trials.clock import CLOCKS
from asap.tools.trials.resources import usable_cores
from asap.tools.trials.workers import limit_threads
from asap.tools.workloads import check_clock, resolve

TASKS = ["hpobench:australian", "hpobench:car", "hpobench:credit_g", "hpobench:kc1",
         "nasbench201:cifar10", "digits-mlp", "charlm"]

# The simulated budgets (seconds) the report reads regret at, by benchmark: an HPOBench MLP
# trains for seconds to hours (australian: median 3.9 s, max 8,563 s), a NAS-Bench-201 cell for
# ~30 minutes (40 trials: 20-23 h).
SIM_BUDGETS: dict[str, tuple[float, ...]] = {"hpobench": (900.0, 3600.0, 14400.0),
                                             "nasbench201": (21600.0, 86400.0)}


def sim_budgets(task: str) -> tuple[float, ...]:
    """The simulated budgets the report reads ``task`` at (none for real training)."""
    return SIM_BUDGETS.get(task.partition(":")[0], ())


@dataclass(frozen=True)
class Grid:
    """What to run: every task x method x seed, each under the same budget."""

    tasks: list[str]
    methods: list[str]
    seeds: int = 5
    trials: int = 30  # on the virtual clock: the cap on a run's trials (its real cost)
    time_s: float | None = None  # None: 600 s, or on the virtual clock the task's last budget
    time_scale: float = 0.1
    db: str = "asap-eval.db"
    base_url: str | None = None
    model: str | None = None
    reference: str = "llm-naive"  # whose final quality is the time-to-target target
    workers: int = 1  # trials in flight per run (llm-naive stays serial: its loop is the method)
    clock: str = "real"  # or "virtual": simulated training, each method's own time charged
    at_trials: int = 40  # the trial axis: regret read at this many trials
    backend: str = "local"  # where asap's sessions run their trials: "ray" for Ray tasks
    ray_address: str | None = None  # a running Ray cluster (HOST:PORT); None: a local instance
    jobs: int = 1  # cells run side by side (the virtual clock only)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
        if "smac" in self.methods:
            check_installed()  # an optional extra: said before the first cell, not in it
        time_s = 1.0 if self.time_s is None else self.time_s
        if self.seeds < 1 or self.trials < 1 or time_s <= 0 or self.time_scale < 0:
            raise ValueError("seeds and trials must be >= 1, time_s > 0 and time_scale >= 0")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {self.jobs}")
        if self.jobs > 1 and self.clock != "virtual":
            raise ValueError("--jobs runs cells side by side, for the virtual clock only: on "
                             "the real clock a cell's wall-clock is what it measures")
        if not (math.isfinite(time_s) and math.isfinite(self.time_scale)):
            raise ValueError("the time budget and time scale must be finite numbers")
        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r}; choose one of {', '.join(CLOCKS)}")
        if self.clock == "virtual" and self.time_scale:
            raise ValueError("the virtual clock sleeps not at all; --time-scale sleeps real "
                             "seconds: use one or the other")
        if self.backend not in get_args(Backend):
            raise ValueError(f"unknown backend {self.backend!r}; choose one of "
                             f"{', '.join(get_args(Backend))}")
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError("a Ray address is for the ray backend (--backend ray)")
        if self.backend == "ray":
            if others := [m for m in self.methods if m not in SESSION_METHODS]:
                raise ValueError(f"method(s) {others} run their trials in this process; the ray "
                                 f"backend is for asap's sessions: {sorted(SESSION_METHODS)}")
        for task in self.tasks:
            check_clock(resolve(task), self.clock)  # an unknown task, or one with no duration

    def budget(self, task: str) -> float:
        """A run's time budget on ``task``, in seconds of the grid's clock."""
        if self.time_s is not None:
            return self.time_s
        return max(sim_budgets(task), default=600.0) if self.clock == "virtual" else 600.0

    def describe(self) -> str:
        """What this grid runs, in one line (printed before it starts and in the report)."""
        workers = f", {self.workers} trials in flight per run" if self.workers > 1 else ""
        workers += ", trials as Ray tasks" if self.backend == "ray" else ""
        workers += f", {self.jobs} cells at a time" if self.jobs > 1 else ""
        head = f"Ran: {', '.join(self.tasks)} x {', '.join(self.methods)}, {self.seeds} seeds, "
        if self.clock == "virtual":
            budgets = ", ".join(sorted({f"{_hours(self.budget(t))} on {t.partition(':')[0]}"
                                        for t in self.tasks}))
            return (head + f"on the virtual clock: each run until its simulated budget is "
                    f"spent ({budgets}; the agent's own time charged) or {self.trials} trials"
                    f"{workers}.")
        clock = (f"simulated clock x{self.time_scale:g}" if self.time_scale else
                 "no simulated clock")
        return (head + f"{self.trials} trials or {self.budget(self.tasks[0]):g} s per run "
                f"(whichever comes first), {clock}{workers}.")

    def cells(self) -> list[Cell]:
        """Every run of the grid; LLM methods get the endpoint when the grid starts."""
        return [Cell(t, m, s, self.trials, self.budget(t), self.time_scale, self.db,
                     workers=self.workers, clock=self.clock, backend=self.backend,
                     ray_address=self.ray_address)
                for t in self.tasks for m in self.methods for s in range(self.seeds)]


def _hours(seconds: float) -> str:
    """A simulated budget as people say it: 15 min, 1 h, 24 h."""
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


PROFILES = {
    # 8 trials took 17.7 min on a 2-core CPU with the embedded SmolLM2 (asap 37 s a run,
    # llm-naive 24 s, the others 13-18 s); 6 trials: ~13 min.
    "quick": dict(tasks=["hpobench:australian", "hpobench:credit_g"],
                  methods=["asap", "llm-naive", "portfolio", "tpe", "random"],
                  seeds=5, trials=6, time_s=60.0, time_scale=0.02),
    # The one that separates methods, on both axes: every HPOBench developer table and
    # NAS-Bench-201 on the virtual clock, each run until its simulated budget (HPOBench 4 h,
    # NAS-Bench-201 24 h) or 200 trials, 10 seeds; regret read at 40 trials and at each
    # simulated budget. asap against each tool it orchestrates, Optuna's GPSampler and SMAC3
    # with their defaults (SMAC: the smac extra), the no-LLM portfolio and prior (the OPRO
    # floor, llm-naive, is serial and slow: add it with --methods).
    # Two cells at a time, each at half the cores (what that saves: docs/evaluation.md).
    "dev": dict(tasks=TASKS[:5], methods=["asap", "portfolio", "prior", "tpe", "cmaes",
                                          "ngopt", "random", "optuna-gp", "smac"],
                seeds=10, trials=200, time_scale=0.0, clock="virtual", jobs=2),
    # The same against a larger model on a GPU host (--base-url, a vLLM server), real training
    # included.
    "gpu": dict(tasks=TASKS, methods=["asap", "llm-naive", "portfolio", "prior", "tpe", "cmaes",
                                      "ngopt", "random"],
                seeds=5, trials=40, time_s=1800.0, time_scale=0.1),
    # Every task and method, 5 seeds, 30 trials or 10 minutes a run: 350 runs, about a day on
    # that CPU (tabular runs ~4 min, digits-mlp/charlm up to their 10-minute cap).
    "full": dict(tasks=TASKS, methods=list(METHODS), seeds=5, trials=30, time_s=600.0,
                 time_scale=0.1),
}


class GridCallback:
    """What a grid reports as it runs (the CLI draws a progress bar); each does nothing unless
    overridden."""

    def on_message(self, text: str) -> None:
        """A line worth showing (the embedded server starting)."""

    def on_cell(self, done: int, total: int, cell: Cell | None) -> None:
        """``done`` of ``total`` cells are finished; ``cell`` runs next (None: the grid ends)."""


def run_grid(grid: Grid, callback: GridCallback | None = None) -> Ledger:
    """Run every cell not done yet; returns the ledger holding cells, studies and trials."""
    callback = callback or GridCallback()
    ledger = Ledger(grid.db)
    table = ledger.db["eval_cells"]
    if not table.exists():
        table.create({"id": str, "task": str, "method": str, "seed": int, "trials_budget": int,
                      "time_budget_s": float, "status": str, "started": float, "ended": float},
                     pk="id")
    cells = grid.cells()
    todo = [c for c in cells if not _is_done(table, c)]
    with contextlib.ExitStack() as stack:
        base_url, model = grid.base_url, grid.model or "default"
        if base_url is None and any(c.method in LLM_METHODS for c in todo):
            base_url, model = endpoint(stack, None, grid.model, say=callback.on_message)
        todo = [dataclasses.replace(c, base_url=base_url, model=model)
                if c.method in LLM_METHODS else c for c in todo]
        done = len(cells) - len(todo)
        if grid.jobs == 1:
            for cell in todo:
                callback.on_cell(done, len(cells), cell)
                _run_cell(ledger, cell)
                done += 1
        else:
            _run_side_by_side(grid, todo, done, len(cells), callback)
        callback.on_cell(len(cells), len(cells), None)
    return ledger


def _run_side_by_side(grid: Grid, todo: list[Cell], done: int, total: int,
                      callback: GridCallback) -> None:
    """``grid.jobs`` cells at a time, each in a process of its own (spawned: this one may hold
    threads, the embedded server's among them); the first cell that fails stops the grid."""
    waiting = list(reversed(todo))
    running: set[Future] = set()
    spawn = multiprocessing.get_context("spawn")
    threads = max(1, usable_cores() // grid.jobs)
    # Each cell's pools (the peers' torch and BLAS, the prior's GP) at its share of the cores,
    # so cells side by side do not wait on each other's threads.
    with ProcessPoolExecutor(max_workers=grid.jobs, mp_context=spawn, initializer=limit_threads,
                             initargs=(threads,)) as pool:
        # No more cells are submitted than run: on an error, leaving the block waits only for
        # the ones running.
        while waiting or running:
            while waiting and len(running) < grid.jobs:
                cell = waiting.pop()
                callback.on_cell(done, total, cell)
                running.add(pool.submit(_run_cell_in, grid.db, cell))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # a failed cell's error, raised here
                done += 1


def _run_cell_in(db: str, cell: Cell) -> None:
    """One cell in a process of its own, on its own connection to the eval's ledger."""
    _run_cell(Ledger(db), cell)


def _is_done(table, cell: Cell) -> bool:
    return table.exists() and bool(table.count_where("id = ? AND status = 'done'", [cell.study]))


def _run_cell(ledger: Ledger, cell: Cell) -> None:
    if ledger.has_study(cell.study):  # cut off last time: start the cell over
        ledger.delete_study(cell.study)
    row = {"id": cell.study, "task": cell.task, "method": cell.method, "seed": cell.seed,
           "trials_budget": cell.trials, "time_budget_s": cell.time_s, "status": "running",
           "started": time.time(), "ended": None}
    with ledger.transaction():
        ledger.db["eval_cells"].upsert(row, pk="id")
    wl = resolve(cell.task, time_scale=cell.time_scale)
    METHODS[cell.method](cell, wl)
    with ledger.transaction():
        ledger.db["eval_cells"].update(cell.study, {"status": "done", "ended": time.time()})
