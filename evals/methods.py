"""The decision-makers an eval compares. Each runs one cell (task, seed, budget) into its study.

Every method goes through the same ledger, :class:`~asap.tools.trials.trainer.Trainer` and workload, so
only the decision-maker differs. Budgets are the same for all: ``trials`` and ``time_s``, whichever
ends first (an LLM method pays its decisions out of the same wall-clock as training), both read
on the cell's clock: real, or virtual (each trial costs its table ``train_time``, the method's own
work its measured time; see :mod:`asap.tools.trials.clock`). Every run logs a ``session`` event (start,
end, clock), the time its curves are measured from.

- ``asap`` and its ablations (``asap-nospec``, ``asap-naive``, ``asap-noselftune``): the agent.
- ``tpe``, ``cmaes``, ``ngopt``, ``random``: one tool alone, ask-and-tell.
- ``optuna-gp``: Optuna's ``GPSampler`` with its own defaults, as a user would run it instead
  of asap (Optuna's study, ask-and-tell); ``smac``: SMAC3's HPO facade with its defaults (the
  optional extra ``asap-hpo[smac]``).
- ``portfolio``: the same panel of tools with no LLM: UCB1 on each tool's improvement rate.
- ``prior``: the agent's panel and its GP prior with no LLM (``asap tune --llm off``, the same
  session and graph): each round trains the proposal with the highest expected improvement
  (the agent's "A"). asap against it is what the LLM adds. Its ablations: ``prior-w1``,
  ``prior-cool``, ``prior-eips`` (the cost weight) and ``prior-gp`` (GPSampler in the panel).
- ``llm-naive``: the LLM writes configurations itself from the history sorted by score, serially
  (Zhang et al. 2023 / OPRO style: temperature 1, the prompt rebuilt each round); numbers outside
  the bounds are clipped, an unusable answer is replaced by a random configuration (an event).
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import HumanMessage

from asap.agent.config import TuneConfig
from asap.agent.llm.client import chat_model, json_model, llm_errors, timed_invoke
from asap.agent.speculation import speculation_mode
from asap.graphs.session import tune
from asap.tools.hpo.panel import PANEL, RANDOM
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.hpo.space import CategoricalParam, IntParam, Space, SpaceError
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.trials.clock import make_clock
from asap.tools.trials.job import TrainingJob
from asap.tools.trials.resources import plan_slots
from asap.tools.trials.trainer import Trainer
from asap.tools.types import Trial
from asap.tools.workloads import Workload, is_tabular


@dataclass(frozen=True)
class Cell:
    """One run of the grid: where it writes and what it may spend."""

    task: str
    method: str
    seed: int
    trials: int
    time_s: float
    time_scale: float
    db: str
    base_url: str | None = None  # the LLM endpoint; None for methods without an LLM
    model: str = "default"
    workers: int = 1  # trials in flight at once
    clock: str = "real"  # real, or virtual: simulated training, the method's own time charged
    backend: str = "local"  # where asap's session runs its trials: here, or Ray tasks
    ray_address: str | None = None  # the Ray cluster those tasks run on (None: a local one)

    @property
    def tabular(self) -> bool:
        return is_tabular(self.task)

    @property
    def study(self) -> str:
        return f"{self.task.replace(':', '-')}.{self.method}.s{self.seed}"

    @property
    def trial_limit_s(self) -> float:
        """A trial's time limit: on the virtual clock, the whole run's budget (an 8,563-s
        configuration is the method's choice to pay for, not a failure); else the default."""
        return self.time_s if self.clock == "virtual" else 600.0


def _done(study: Study, cell: Cell, started: float) -> bool:
    return (len(study.finished_ids()) >= cell.trials
            or study.clock.now() - started >= cell.time_s)


@contextlib.contextmanager
def _session(cell: Cell, wl: Workload) -> Iterator[tuple[Study, float]]:
    """A new study for the cell on the cell's clock, logged as one session (start, end, clock)
    as a tuning session logs itself; yields it and its start time."""
    study = Ledger(cell.db).create_study(cell.study, wl.space, metric=wl.metric,
                                         direction=wl.direction, workload=wl.ref,
                                         meta={"method": cell.method, "seed": cell.seed})
    study.clock = make_clock(cell.clock)
    started = study.clock.now()
    try:
        yield study, started
    finally:
        study.log_event("session", start=started, end=study.clock.now(), clock=cell.clock)
        study.clock.close()


def _trainer(study: Study, wl: Workload, cell: Cell) -> Trainer:
    """Every method's trainer; table lookups run in-process (same records, no worker start-up:
    the grids run thousands of them)."""
    return Trainer(study, wl, seed=cell.seed, in_process=cell.tabular,
                   time_limit_s=cell.trial_limit_s,
                   slots=plan_slots(cell.workers) if cell.workers > 1 else None)


def ask_tell(cell: Cell, study: Study, trainer: Trainer, portfolio: Portfolio,
             pick: Callable[[], tuple[str, dict[str, Any], Any]],
             landed: Callable[[str, Trial, Any], None] = lambda tool, trial, handle: None
             ) -> None:
    """Keep ``cell.workers`` trials in flight until the budget: ``pick()`` the next (tool,
    config, handle) whenever a worker is free (the tools see the running ones as pending, see
    :meth:`Portfolio.sync`), ``landed(tool, trial, handle)`` as each finishes, with the handle
    its pick returned (a library's own trial, what the pick saw). Optuna's ``n_jobs`` shape,
    with one ledger."""
    started, done = study.clock.now(), queue.SimpleQueue()
    jobs: dict[int, tuple[str, TrainingJob, Any]] = {}
    while True:
        while (len(jobs) < cell.workers and len(study.trials()) < cell.trials
               and not _done(study, cell, started)):
            tool, config, handle = pick()
            job = trainer.start(config, tool=tool, landed=done)
            jobs[job.trial_id] = (tool, job, handle)
        if not jobs:
            return
        tool, job, handle = jobs.pop(study.clock.take(done))
        portfolio.sync()
        landed(tool, job.wait(), handle)


def single(library: str, algorithm: str) -> Callable[[Cell, Workload], None]:
    """One tool alone: ask, train, tell, until the budget."""
    def run(cell: Cell, wl: Workload) -> None:
        with _session(cell, wl) as (study, _):
            portfolio, trainer = Portfolio(study, seed=cell.seed), _trainer(study, wl, cell)
            ask_tell(cell, study, trainer, portfolio, lambda: (
                f"{library}:{algorithm}", portfolio.ask(library, algorithm)[0], None))
    return run


def optuna_peer(sampler: str) -> Callable[[Cell, Workload], None]:
    """An Optuna sampler as a user would run it instead of asap: Optuna's own study with the
    sampler's defaults (``optuna.samplers.<sampler>(seed=...)``, not asap's panel settings),
    asked and told through Optuna's ask-and-tell, its trials trained through the same ledger,
    trainer, table lookups and per-trial seeds as every method."""
    def run(cell: Cell, wl: Workload) -> None:
        import optuna

        from asap.tools.hpo.optuna_tool import STATES, suggest_config

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with _session(cell, wl) as (study, _):
            native = optuna.create_study(direction=study.direction, sampler=getattr(
                optuna.samplers, sampler)(seed=cell.seed))

            def pick() -> tuple[str, dict[str, Any], optuna.Trial]:
                trial = native.ask()
                return f"optuna-peer:{sampler}", suggest_config(study.space, trial), trial

            def landed(tool: str, trial: Trial, mine: optuna.Trial) -> None:
                if trial.status == "complete" and trial.value is not None:
                    native.tell(mine, trial.value)
                else:
                    native.tell(mine, state=STATES.get(trial.status, STATES["failed"]))

            ask_tell(cell, study, _trainer(study, wl, cell), Portfolio(study, seed=cell.seed),
                     pick, landed)
    return run


def smac(cell: Cell, wl: Workload) -> None:
    """SMAC3's HPO facade with its defaults (:mod:`asap.evals.smac_peer`), ask-and-tell, its
    trials through the same ledger and table lookups as every method."""
    from asap.evals.smac_peer import SmacAsker

    asker = SmacAsker(wl.space, wl.direction, cell.trials, cell.seed)  # SmacMissing first
    try:
        with _session(cell, wl) as (study, _):
            ask_tell(cell, study, _trainer(study, wl, cell), Portfolio(study, seed=cell.seed),
                     lambda: ("smac:hpo", *asker.ask()),
                     lambda tool, trial, info: asker.tell(
                         info, trial.value if trial.status == "complete" else None))
    finally:
        asker.close()


def bandit(cell: Cell, wl: Workload) -> None:
    """The no-LLM portfolio: UCB1 over the agent's panel of tools, reward 1 when a trial
    improves the best (the best when it started)."""
    with _session(cell, wl) as (study, _):
        _bandit(cell, wl, study)


def _bandit(cell: Cell, wl: Workload, study: Study) -> None:
    portfolio, trainer = Portfolio(study, seed=cell.seed), _trainer(study, wl, cell)
    pulls = {t.key: [0, 0] for t in PANEL}  # tool -> [trials, improvements]

    def pick() -> tuple[str, dict[str, Any], float | None]:
        n = sum(p for p, _ in pulls.values())
        tool = max(pulls, key=lambda k: math.inf if not pulls[k][0] else
                   pulls[k][1] / pulls[k][0] + math.sqrt(2 * math.log(n) / pulls[k][0]))
        pulls[tool][0] += 1  # counted when pulled: N workers spread over the arms
        lib, alg = tool.split(":")
        best = study.best()
        return tool, portfolio.ask(lib, alg)[0], best.value if best else None

    def landed(tool: str, trial: Trial, before: float | None) -> None:
        pulls[tool][1] += int(trial.value is not None and study.better(trial.value, before))

    ask_tell(cell, study, trainer, portfolio, pick, landed)


class Session:
    """The asap agent with ``switches`` (ablations) on the shared endpoint: asap's own session,
    so its trials may run on Ray (``cell.backend``), where the other methods keep theirs here."""

    def __init__(self, **switches: Any) -> None:
        self.switches = switches

    def __call__(self, cell: Cell, wl: Workload) -> None:
        cfg = TuneConfig(workload=cell.task, trials=cell.trials, time_budget_s=cell.time_s,
                         study=cell.study, db=cell.db, base_url=cell.base_url, model=cell.model,
                         seed=cell.seed, time_scale=cell.time_scale, isolate=not cell.tabular,
                         workers=cell.workers, clock=cell.clock, backend=cell.backend,
                         ray_address=cell.ray_address, trial_timeout_s=cell.trial_limit_s,
                         **self.switches)
        if cfg.speculation == "auto":  # as if embedded: the shared server is on this machine
            cfg = cfg.model_copy(update={"speculation": speculation_mode(
                cfg.model_copy(update={"base_url": None}))})
        tune(cfg, workload=wl)


OPRO = """You are optimizing the hyperparameters of {workload} to {direction} {metric}.
Search space:
{space}

Configurations tried so far with their {metric}, sorted from worst to best:
{history}

Write a new configuration, different from all of the above, that you expect to reach a better
{metric}. Answer with one JSON object of parameter values."""


def llm_naive(cell: Cell, wl: Workload) -> None:
    """The LLM proposes configurations directly; invalid answers are replaced by a random one."""
    with _session(cell, wl) as (study, started):
        _llm_naive(cell, wl, study, started)


def _llm_naive(cell: Cell, wl: Workload, study: Study, started: float) -> None:
    trainer, portfolio = _trainer(study, wl, cell), Portfolio(study, seed=cell.seed)
    llm = json_model(chat_model(cell.base_url, cell.model, temperature=1.0, seed=cell.seed),
                     study.space.json_schema())
    while not _done(study, cell, started):
        done = sorted((t for t in study.trials(status="complete")),
                      key=lambda t: t.value if study.direction == "maximize" else -t.value)
        history = "\n".join(f"{json.dumps(t.config)} -> {t.value:.4g}" for t in done[-20:])
        prompt = OPRO.format(workload=wl.ref, direction=study.direction[:-1], metric=study.metric,
                             space=study.space.describe(), history=history or "(none yet)")
        tool, config = "llm", None
        try:
            answer = timed_invoke(llm, [HumanMessage(prompt)], study=study, protocol="json",
                                  trial_number=len(study.trials()))
            config = study.space.validate(_clip(study.space, json.loads(answer.content)))
        except (*llm_errors(), json.JSONDecodeError, KeyError, SpaceError) as exc:
            study.log_event("fallback", tool=RANDOM.key, reason=f"{type(exc).__name__}: {exc}"[:200])
            tool, config = RANDOM.key, portfolio.ask(RANDOM.library, RANDOM.algorithm)[0]
        trainer.run(config, tool=tool)


def _clip(space: Space, raw: dict[str, Any]) -> dict[str, Any]:
    """The active parameters of ``raw`` with numbers clipped into their bounds.

    llama.cpp's JSON-schema grammar enforces types but not float bounds, so a small model writes
    e.g. ``alpha: 1e-20``; the baseline keeps the answer's intent rather than discarding it.
    """
    out: dict[str, Any] = {}
    for p in space.active(raw):
        v = raw[p.name]
        if not isinstance(p, CategoricalParam) and isinstance(v, int | float):
            v = min(max(v, p.low), p.high)
            v = int(round(v)) if isinstance(p, IntParam) else float(v)
        out[p.name] = v
    return out


METHODS: dict[str, Callable[[Cell, Workload], None]] = {
    "asap": Session(),
    "asap-nospec": Session(speculation="off"),
    "asap-naive": Session(prompt="naive"),
    "asap-noselftune": Session(selftune=False),
    "tpe": single("optuna", "tpe"),
    "cmaes": single("optuna", "cmaes"),
    "ngopt": single("nevergrad", "NGOpt"),
    "random": single("optuna", "random"),
    # the strongest sampler a user would pick instead, with its own defaults
    "optuna-gp": optuna_peer("GPSampler"),
    "smac": smac,  # SMAC3's HPO facade: the optional extra asap-hpo[smac]
    "portfolio": bandit,
    "prior": Session(llm=False),
    # ablations of the prior: one proposal per tool and round (4, not 7); EI per predicted
    # second with cost-cooling (CArBO), and per second throughout (agent/prior/cost.py); the
    # panel with Optuna's GPSampler beside the four tools; the panel alone in the initial
    # design (no Sobol points beside it)
    "prior-w1": Session(llm=False, width=1),
    "prior-cool": Session(llm=False, cost_weight="cool"),
    "prior-eips": Session(llm=False, cost_weight=1.0),
    "prior-gp": Session(llm=False, panel=",".join([t.key for t in PANEL] + ["optuna:gp"])),
    "prior-nodesign": Session(llm=False, design=None),
    "llm-naive": llm_naive,
}
# The methods that run asap's own session (the agent and the prior with their ablations): the
# only ones whose trials can run on Ray (the others keep them in this process).
SESSION_METHODS = frozenset(name for name, run in METHODS.items() if isinstance(run, Session))
LLM_METHODS = {"asap", "asap-nospec", "asap-naive", "asap-noselftune", "llm-naive"}
