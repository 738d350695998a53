"""The tools that propose, as objects: each optimizer library's algorithm and how asap treats it.

Why objects, not positions: which tools are cheap to ask again in a wide round, how a tool is
drawn and named, and which names a person may use for it are properties of the tool, so a tool
added to a panel brings them along (an expensive one is not asked ``width`` times a round
because of where it stands). Each :class:`Tool` carries them; the portfolio, the prompt, the
palette and the chat's patterns read :data:`TOOLS` and :data:`PANEL`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tool:
    """One proposing tool: ``library``'s ``algorithm``, and how asap treats it."""

    library: str  # "optuna", "nevergrad": a key of asap.tools.hpo.portfolio.LIBRARIES
    algorithm: str  # the library's name for it (Optuna's sampler, Nevergrad's optimizer)
    cheap: bool  # an ask costs a few ms: asked again when a round is wider than the panel
    label: str  # how a person names it ("TPE", "CMA-ES")
    sampler: Any = field(default=None, compare=False)  # a user's own Optuna sampler object

    @property
    def key(self) -> str:
        """How the ledger records the tool of a trial: ``library:algorithm``."""
        return f"{self.library}:{self.algorithm}"


# Every tool asap can run, in the order figures colour them. TPE's and the GP's asks model every
# trial (TPE 5-30 ms at 100 trials, evals/bench_core.py; the GP far more), the others' cost 1-2 ms.
TOOLS: dict[str, Tool] = {t.key: t for t in (
    Tool("optuna", "tpe", cheap=False, label="TPE"),
    Tool("optuna", "cmaes", cheap=True, label="CMA-ES"),
    Tool("nevergrad", "NGOpt", cheap=True, label="NGOpt"),
    Tool("nevergrad", "DE", cheap=True, label="DE"),
    Tool("optuna", "random", cheap=True, label="random"),
    Tool("optuna", "gp", cheap=False, label="GP"),
    Tool("optuna", "qmc", cheap=True, label="QMC"),
    Tool("nevergrad", "CMA", cheap=True, label="CMA"),
    Tool("nevergrad", "TwoPointsDE", cheap=True, label="TwoPointsDE"),
    Tool("nevergrad", "PSO", cheap=True, label="PSO"),
    Tool("nevergrad", "OnePlusOne", cheap=True, label="OnePlusOne"),
    Tool("nevergrad", "TBPSA", cheap=True, label="TBPSA"),
    Tool("nevergrad", "RandomSearch", cheap=True, label="RandomSearch"),
)}
# The tools that propose every round, in the order the prompt shows them.
PANEL: tuple[Tool, ...] = tuple(TOOLS[k] for k in ("optuna:tpe", "optuna:cmaes",
                                                   "nevergrad:NGOpt", "nevergrad:DE"))
# What proposes when a tool keeps repeating itself, every panel tool failed, or the LLM's own
# configuration already ran: random sampling.
RANDOM = TOOLS["optuna:random"]
# How the ledger names asap's own pick in a finite space: the first point not run yet (the tools
# kept repeating themselves, or the space has one point).
UNTRIED = "asap:untried"


def sampler_tool(sampler: Any) -> Tool:
    """A user's own Optuna sampler object as a tool (``optuna:GPSampler``), as an Optuna user
    passes ``sampler=``: its settings and seed are the user's (asap does not reseed it, and
    works on a copy); asked once a round, as its cost is unknown."""
    import optuna

    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ValueError(f"a sampler must be an Optuna sampler object (optuna.samplers.*) or a "
                         f"tool's name among {list(TOOLS)}, got {type(sampler).__name__}")
    name = type(sampler).__name__
    return Tool("optuna", name, cheap=False, label=name, sampler=sampler)


def panel_from(items: Any) -> tuple[Tool, ...]:
    """A panel from tools' names ("optuna:tpe", or "optuna:tpe,nevergrad:DE" as the setting
    spells them) and Optuna sampler objects, mixed, in that order: a name must be known, and
    the tools distinct."""
    if isinstance(items, str):
        items = [name.strip() for name in items.split(",")]
    elif not isinstance(items, list | tuple):
        items = [items]  # one sampler object
    tools = []
    for item in items:
        if not isinstance(item, str):
            tools.append(sampler_tool(item))
        elif item in TOOLS:
            tools.append(TOOLS[item])
        else:
            raise ValueError(f"unknown tool {item!r}; choose among {list(TOOLS)} or pass an "
                             "Optuna sampler object")
    if not tools or len({t.key for t in tools}) < len(tools):
        raise ValueError(f"a panel names distinct tools, at least one; got "
                         f"{[t.key for t in tools]}")
    return tuple(tools)


def panel_of(names: str | None) -> tuple[Tool, ...]:
    """The panel a setting names ("optuna:tpe,optuna:gp"; None: :data:`PANEL`)."""
    return PANEL if names is None else panel_from(names)


def wide(panel: tuple[Tool, ...] = PANEL) -> tuple[Tool, ...]:
    """The tools asked again when a round is wider than the panel: the cheap ones."""
    return tuple(t for t in panel if t.cheap)


def algorithms(library: str) -> tuple[str, ...]:
    """The algorithm names :data:`TOOLS` holds for ``library``."""
    return tuple(t.algorithm for t in TOOLS.values() if t.library == library)


def name_pattern(*extra: str) -> str:
    """A regex alternation of every tool's names as people write them ("tpe", "cma-es",
    "ngopt"), lower-case, longest first, plus ``extra`` words; matches give :func:`spoken`."""
    names = {t.algorithm.lower() for t in TOOLS.values()} | {
        t.label.lower() for t in TOOLS.values()} | set(extra)
    return "|".join(sorted((n.replace("-", "-?") for n in names), key=len, reverse=True))


def spoken(word: str) -> str:
    """A tool's name as a person wrote it, as the ledger spells its algorithm part in lower
    case ("CMA-ES" -> "cmaes")."""
    w = word.lower().replace("-", "")
    return next((t.algorithm.lower() for t in TOOLS.values()
                 if w in (t.algorithm.lower(), t.label.lower().replace("-", ""))), w)
