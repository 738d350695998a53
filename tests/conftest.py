from __future__ import annotations

import pytest

from asap.tools.hpo.space import Space
from asap.tools.ledger.store import Ledger

TOY = {
    "x": {"type": "float", "low": -5.0, "high": 5.0},
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 4},
    "units_l3": {"type": "int", "low": 8, "high": 64, "step": 8, "when": {"parent": "n_layers", "ge": 3}},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"parent": "optimizer", "in": ["sgd"]}},
}


@pytest.fixture
def toy_space() -> Space:
    return Space.from_dict(TOY)


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


def toy_objective(config: dict) -> float:
    """A smooth function with its optimum at x=2, lr=0.01 (minimize)."""
    import math
    return (config["x"] - 2.0) ** 2 + (math.log10(config["lr"]) + 2.0) ** 2
