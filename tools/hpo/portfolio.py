"""The tools' shared state: one optimizer per (library, algorithm), all fed the whole ledger.

Optimizers are created lazily and replay every finished trial on creation, so reopening a study
(a new process) rebuilds their state from the ledger alone; afterwards :meth:`Portfolio.sync`
tells each of them only the trials it has not seen.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import zlib
from collections.abc import Iterator
from typing import Any

from asap.tools.hpo.nevergrad_tool import NevergradOptimizer
from asap.tools.hpo.optimizer import Optimizer
from asap.tools.hpo.optuna_tool import OptunaOptimizer
from asap.tools.hpo.panel import PANEL, RANDOM, UNTRIED, Tool, wide
from asap.tools.hpo.params import CategoricalParam
from asap.tools.ledger.study import Study
from asap.tools.types import Trial, config_key

# The optimizer libraries by name; a new one is an Optimizer subclass added here.
LIBRARIES: dict[str, type[Optimizer]] = {cls.library: cls for cls in (OptunaOptimizer,
                                                                       NevergradOptimizer)}
Offer = tuple[str, dict[str, Any]]  # (tool, config): one proposal of a round


def load_in_background(panel: tuple[Tool, ...] = PANEL) -> threading.Thread:
    """Import the libraries of ``panel``'s tools on a thread of its own (started, returned).

    Why: a new process pays Nevergrad's import in the first round that makes its optimizers
    (docs/evaluation.md); started where this process only waits (a trial trains in its worker), the
    import is off the critical path. Not a daemon: the interpreter waits for it at exit rather
    than stopping it inside an import. An import that fails here fails again, with its error,
    where the tool is made (:meth:`Portfolio.optimizer`)."""
    def load() -> None:
        for library in dict.fromkeys(tool.library for tool in panel):
            with contextlib.suppress(Exception):
                LIBRARIES[library].load()

    thread = threading.Thread(target=load, name="asap-load-tools")
    _loading.append(thread)
    thread.start()
    return thread


_loading: list[threading.Thread] = []  # started by load_in_background


def _loaded() -> None:
    """Wait for the background loads: an optimizer is made after them, so this thread never
    imports a library while that thread is inside the same import."""
    for thread in list(_loading):
        thread.join()
        with contextlib.suppress(ValueError):  # another thread removed it first
            _loading.remove(thread)


def tool_seed(seed: int, tool: str, seen: int) -> int:
    """A tool's seed: one per tool (with a shared seed their random start-up samples coincide),
    and one per point of the study where it is created (``seen`` finished trials), so a resumed
    or extended study continues each tool's sequence instead of replaying its start-up."""
    return (seed + zlib.crc32(tool.encode()) + 7919 * seen) % 2**31


class Portfolio:
    """Optimizers bound to one study, kept in sync with its ledger."""

    def __init__(self, study: Study, seed: int = 0, width: int = 1,
                 panel: tuple[Tool, ...] = PANEL, design: Tool | None = None) -> None:
        self.study = study
        self.seed = seed
        self.width = width  # proposals each panel tool makes per round
        self.panel = panel  # the tools that propose every round (asap.tools.hpo.panel)
        self.design = design  # proposes beside them in the initial design (:meth:`round_tools`)
        self._optimizers: dict[str, Optimizer] = {}
        self._told: dict[str, set[int]] = {}
        self._hypothetical: list[Trial] = []  # told to every optimizer of a fork (speculation)
        self._pended: dict[str, set[int]] = {}  # running trials each optimizer holds as pending
        self._open: list[tuple[str, dict[str, Any]]] = []  # asked, not yet trained or discarded
        self.broken: dict[str, str] = {}  # tool -> why it failed: left out of later rounds

    def optimizer(self, library: str, algorithm: str) -> Optimizer:
        key = f"{library}:{algorithm}"
        if key not in self._optimizers:
            if library not in LIBRARIES:
                raise ValueError(f"unknown library {library!r}; choose one of {list(LIBRARIES)}")
            cls = LIBRARIES[library]
            _loaded()
            seed = tool_seed(self.seed, key, len(self.study.finished_ids()))
            own = next((t.sampler for t in self.panel if t.key == key and t.sampler), None)
            extra = {} if own is None else {"sampler": copy.deepcopy(own)}  # the user's object
            self._optimizers[key] = cls(self.study.space, self.study.direction, algorithm, seed,
                                        **extra)
            # A hypothetical trial stands in for its real one, which the fork must not be told.
            self._told[key] = {t.id for t in self._hypothetical}
            self._pended[key] = set()
            self.sync()
            for trial in self._hypothetical:
                self._optimizers[key].tell(trial)
        self.sync()
        return self._optimizers[key]

    def round_tools(self) -> tuple[Tool, ...]:
        """The tools this round asks: the panel, and :attr:`design` while the study is in its
        initial design (fewer finished trials than 10 per numeric parameter, the usual size of
        a Bayesian optimizer's initial design; a space of categories alone has none)."""
        if self.design is None or self.design in self.panel:
            return self.panel
        numeric = sum(not isinstance(p, CategoricalParam) for p in self.study.space.params)
        return (*self.panel, self.design) if len(self.study.finished_ids()) < 10 * numeric \
            else self.panel

    def sync(self) -> int:
        """Tell every optimizer the finished trials it has not seen, and show it the running
        ones as pending (other workers' trials: see :meth:`Optimizer.pend`); returns how many
        finished trials were new."""
        if not self._optimizers:
            return 0
        self._pend_running()
        finished = self.study.finished_ids()
        seen = set.intersection(*self._told.values()) if self._told else set()
        new = {i: self.study.trial(i) for i in finished if i not in seen}
        for key, opt in list(self._optimizers.items()):
            told = self._told[key]
            with self._guard(key):
                for tid in sorted(new):
                    if tid not in told:
                        opt.tell(new[tid])
                        told.add(tid)
        return len(new)

    def _pend_running(self) -> None:
        assumed = {h.id for h in self._hypothetical}  # a fork's guesses stand in for these
        running = [t for t in self.study.trials(status="running") if t.id not in assumed]
        for key, opt in list(self._optimizers.items()):
            pended = self._pended.setdefault(key, set())
            with self._guard(key):
                for trial in running:
                    if trial.id not in pended and trial.id not in self._told[key]:
                        opt.pend(trial)
                        pended.add(trial.id)

    def settle(self) -> None:
        """Discard the proposals asked so far that no trial trains (the round's losers, a
        suggest tool's unused answers): a library counting running trials must not wait on
        them. Called before each new round asks again."""
        if not self._open:
            return
        trained = self.study.config_keys()
        for tool, config in self._open:
            if config_key(config) not in trained and tool in self._optimizers:
                with self._guard(tool):
                    self._optimizers[tool].discard(config)
        self._open = []

    def fork(self, hypothetical: list[Trial]) -> Portfolio:
        """A deep copy of every optimizer, told ``hypothetical`` trials (speculation).

        The ledger and this portfolio's optimizers stay as they were, so a prediction that turns
        out wrong leaves nothing behind; optimizers the fork creates later are told them too.
        """
        self.sync()
        twin = Portfolio(self.study, self.seed, self.width, self.panel, self.design)
        twin._optimizers = copy.deepcopy(self._optimizers)
        twin._told = {k: v | {t.id for t in hypothetical} for k, v in self._told.items()}
        twin._pended = {k: set(v) for k, v in self._pended.items()}
        twin._hypothetical = [*self._hypothetical, *hypothetical]
        twin.broken = dict(self.broken)
        for key, opt in list(twin._optimizers.items()):
            with twin._guard(key):
                for trial in hypothetical:
                    opt.tell(trial)
        return twin

    def ask(self, library: str, algorithm: str, n: int = 1) -> list[dict[str, Any]]:
        """``n`` proposals of one tool; the ones not trained are discarded at :meth:`settle`."""
        configs = self.optimizer(library, algorithm).ask(n)
        self._open.extend((f"{library}:{algorithm}", c) for c in configs)
        return configs

    def panel_offers(self, retries: int = 3) -> list[Offer]:
        """One proposal from each tool of the panel, then (:attr:`width` > 1) more from each
        cheap one (:func:`~asap.tools.hpo.panel.wide`), pass by pass; labelled by tool, none a
        repeat.

        A configuration that already ran in the study (or that a fork assumed), or that another
        tool offers this round, is asked again up to ``retries`` times; a tool that keeps
        repeating itself (a converged CMA-ES) is replaced this round by a random sample.
        The tools are first told the results they have not seen (:meth:`sync`). A space with
        one configuration (a define-by-run objective's placeholder before its first trial) asks
        no tool: every tool would propose that configuration, and making the tools (importing
        Nevergrad) would only delay the trial.
        """
        if self.study.space.countable(limit=1) is not None:
            return [(UNTRIED, self.study.space.untried(set()))]
        self.sync()
        self.settle()
        seen = self.study.config_keys() | {config_key(t.config) for t in self._hypothetical}
        offers: list[Offer] = []
        panel = self.round_tools()
        for rank in range(self.width):
            for tool in panel if rank == 0 else wide(panel):
                if tool.key in self.broken:
                    continue
                with self._guard(tool.key):
                    offers.append(self._unseen_offer(tool.library, tool.algorithm, seen,
                                                     retries))
                    seen.add(config_key(offers[-1][1]))
        if not offers:  # every tool of the panel failed: random sampling still proposes
            offers.append((RANDOM.key, self._fresh_random(seen)))
        return offers

    def _unseen_offer(self, lib: str, alg: str, seen: set[str], retries: int) -> Offer:
        """The tool's next proposal not in ``seen``, else (it keeps repeating) a random one."""
        for _ in range(retries + 1):
            config = self.ask(lib, alg, 1)[0]
            if config_key(config) not in seen:
                return f"{lib}:{alg}", config
        return RANDOM.key, self._fresh_random(seen)

    @contextlib.contextmanager
    def _guard(self, tool: str) -> Iterator[None]:
        """Whatever ``tool`` raises inside leaves it out of the session (:meth:`_drop`): a
        library bug must not end the session."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - any library error
            self._drop(tool, exc)

    def _drop(self, tool: str, exc: Exception) -> None:
        """Leave a failing tool out of this session's rounds, and say why in the ledger.

        Measured: Nevergrad's NGOpt raised a TypeError inside its metamodel at the 13th trial
        of a one-parameter space, every round after, and again on every resume.
        """
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self.broken[tool] = reason
        self._optimizers.pop(tool, None)
        self._told.pop(tool, None)
        self._pended.pop(tool, None)
        self.study.log_event("tool_failed", tool=tool, reason=reason)

    def advance(self, rounds: int) -> None:
        """Skip ``rounds`` proposals of each panel tool: the ones speculative forks (copies of
        these tools) already made and the session trained, which these tools would otherwise
        propose next (during start-up their proposals depend on their random state alone)."""
        for tool in self.round_tools():
            if tool.key not in self.broken:
                with self._guard(tool.key):
                    self.ask(tool.library, tool.algorithm,
                             rounds * (self.width if tool.cheap else 1))

    def _fresh_random(self, seen: set[str], tries: int = 100) -> dict[str, Any]:
        """A random configuration not in ``seen`` (the last try if the space is that small)."""
        config: dict[str, Any] = {}
        for _ in range(tries):
            config = self.ask(RANDOM.library, RANDOM.algorithm, 1)[0]
            if config_key(config) not in seen:
                break
        return config
