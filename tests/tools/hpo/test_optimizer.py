"""The optimizer interface every library adapter shares: asks are valid and pending until told
or discarded, foreign trials are told as such, unknown algorithms are named, and the libraries'
chatter stays inside the adapter."""

from __future__ import annotations

import logging
from typing import Any

import optuna
import pytest

from asap.tools.hpo.optimizer import Optimizer, quiet
from asap.tools.hpo.panel import RANDOM
from asap.tools.hpo.portfolio import LIBRARIES
from asap.tools.types import Trial


class Recording(Optimizer):
    """An adapter that proposes x = 0.1, 0.2, ... and records what it is told."""

    library = "test"
    algorithms = ("count",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[tuple[float, Any]] = []
        self.discarded: list[Any] = []

    def _ask(self) -> tuple[dict[str, Any], Any]:
        n = len(self._pending) + len(self.told) + 1
        return {"x": n / 10}, f"handle-{n}"

    def _tell(self, trial: Trial, handle: Any | None) -> None:
        self.told.append((trial.config["x"], handle))

    def _discard(self, handle: Any) -> None:
        self.discarded.append(handle)


def _trial(x: float, value: float = 1.0) -> Trial:
    return Trial(id=1, number=0, config={"x": x}, tool="t", status="complete", value=value,
                 metrics={"score": value}, intermediate={}, error=None, fidelity=None,
                 started_at=0.0, ended_at=1.0, duration=1.0)


@pytest.fixture
def space():
    from asap.tools.hpo.space import Space
    return Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})


def test_own_asks_come_back_with_their_handle_and_foreign_trials_without(space):
    opt = Recording(space, "maximize", "count")
    a, b = opt.ask(2)
    opt.tell(_trial(a["x"]))
    opt.tell(_trial(0.77))  # nobody asked this optimizer for it
    opt.discard(b)
    assert opt.told == [(0.1, "handle-1"), (0.77, None)] and opt.discarded == ["handle-2"]
    assert opt.n_told == 2 and opt.name == "test:count"
    assert opt.loss(0.9) == -0.9  # maximize: libraries that only minimize see the negation


def test_an_unknown_algorithm_names_the_known_ones(space):
    with pytest.raises(ValueError, match=r"unknown test algorithm 'nope'; choose one of \['count'\]"):
        Recording(space, "minimize", "nope")


def test_the_libraries_are_registered_as_classes_and_random_is_one_of_them(space):
    assert all(issubclass(cls, Optimizer) for cls in LIBRARIES.values())
    lib, alg = RANDOM.library, RANDOM.algorithm
    config = LIBRARIES[lib](space, "minimize", alg, seed=1).ask()[0]
    assert 0.0 <= config["x"] <= 1.0


def test_quiet_hides_optunas_study_chatter_only_inside_the_block(caplog):
    logger = logging.getLogger("optuna.storages._in_memory")
    with caplog.at_level(logging.INFO, logger="optuna"):
        optuna.logging.enable_propagation()
        try:
            with quiet({}):
                logger.info("A new study created in memory")
            logger.info("outside the block")
        finally:
            optuna.logging.disable_propagation()
    messages = [r.getMessage() for r in caplog.records]
    assert "A new study created in memory" not in messages and "outside the block" in messages


def test_a_tool_added_to_the_panel_keeps_its_own_cost_class(ledger):
    """Optuna's GPSampler appended to the panel is not "cheap": a wide round asks it once, as
    it asks TPE, and the cheap tools twice; the registry, not a position, says so."""
    from asap.tools.hpo.panel import PANEL, TOOLS, panel_of
    from asap.tools.hpo.portfolio import Portfolio
    from asap.tools.hpo.space import Space

    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0},
                             "n": {"type": "int", "low": 1, "high": 50}})
    study = ledger.create_study("p", space, metric="score", direction="maximize")
    panel = panel_of("optuna:tpe,optuna:cmaes,optuna:gp")
    assert panel == (TOOLS["optuna:tpe"], TOOLS["optuna:cmaes"], TOOLS["optuna:gp"])
    offers = Portfolio(study, seed=1, width=2, panel=panel).panel_offers()
    assert [tool for tool, _ in offers] == ["optuna:tpe", "optuna:cmaes", "optuna:gp",
                                            "optuna:cmaes"]
    assert panel_of(None) == PANEL


def test_a_panel_setting_names_registered_tools_only():
    from asap.agent.config import ConfigError, TuneConfig

    assert TuneConfig.make(workload="digits-mlp", panel=["optuna:gp", "nevergrad:DE"]).panel \
        == "optuna:gp,nevergrad:DE"
    with pytest.raises(ConfigError, match=r"panel: .*must name distinct tools among"):
        TuneConfig.make(workload="digits-mlp", panel="optuna:tpe,optuna:smac")


def test_a_space_with_one_configuration_asks_no_tool(ledger):
    """A define-by-run objective's placeholder (one categorical of one choice, an int whose low
    is its high): the round is that configuration, and no tool is made (none imports
    Nevergrad before the first trial)."""
    from asap.tools.hpo.portfolio import Portfolio
    from asap.tools.hpo.space import Space

    space = Space.from_dict({"probe": {"type": "categorical", "choices": [0]},
                             "n": {"type": "int", "low": 3, "high": 3}})
    study = ledger.create_study("one", space, metric="loss", direction="minimize")
    portfolio = Portfolio(study, seed=0)
    assert portfolio.panel_offers() == [("asap:untried", {"probe": 0, "n": 3})]
    assert portfolio._optimizers == {} and portfolio._open == []
    two = Space.from_dict({"probe": {"type": "categorical", "choices": [0, 1]}})
    offers = Portfolio(ledger.create_study("two", two, metric="loss", direction="minimize"),
                       seed=0).panel_offers()
    assert [tool for tool, _ in offers][0] == "optuna:tpe"  # two configurations: the panel
