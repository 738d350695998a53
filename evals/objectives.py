"""Real objectives of a few seconds a trial, as a new user brings them: the real-clock benchmark's
tasks (``evals/bench_real.py``).

Each task is an objective in asap's form (``objective(config, report) -> float``, maximized), its
space in the space file's form, and the same objective in Optuna's form (``objective(trial)``)
built from that space, so Optuna's samplers and asap see one function over one space.
They live in a module of their own, as a user's objective usually does (its imports at the top):
a worker process imports this module, not the script that calls ``asap.optimize``. The torch
MLP imports torch in its body, as an objective sometimes does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC


def gbc_cancer(config: dict[str, Any], report: Any = None) -> float:
    """scikit-learn's GradientBoostingClassifier on ``load_breast_cancer``, 3-fold CV accuracy."""
    x, y = load_breast_cancer(return_X_y=True)
    model = GradientBoostingClassifier(
        n_estimators=config["n_estimators"], learning_rate=config["learning_rate"],
        max_depth=config["max_depth"], subsample=config["subsample"], random_state=0)
    return float(np.mean(cross_val_score(model, x, y, cv=3)))


def svc_digits(config: dict[str, Any], report: Any = None) -> float:
    """An RBF SVC on ``load_digits`` (scaled), 3-fold CV accuracy."""
    x, y = load_digits(return_X_y=True)
    model = SVC(C=config["C"], gamma=config["gamma"])
    return float(np.mean(cross_val_score(model, x / 16.0, y, cv=3)))


def rf_digits(config: dict[str, Any], report: Any = None) -> float:
    """A random forest on ``load_digits``, 3-fold CV accuracy."""
    x, y = load_digits(return_X_y=True)
    model = RandomForestClassifier(
        n_estimators=config["n_estimators"], max_depth=config["max_depth"],
        max_features=config["max_features"], min_samples_leaf=config["min_samples_leaf"],
        random_state=0, n_jobs=1)
    return float(np.mean(cross_val_score(model, x, y, cv=3)))


def mlp_digits(config: dict[str, Any], report: Any = None) -> float:
    """asap's torch digits MLP at a small fidelity (10 epochs): validation accuracy."""
    from asap.tools.workloads.digits import digits_mlp

    full = {"weight_decay": 1e-4, "dropout": 0.1, "momentum": 0.9, "beta1": 0.9, **config}
    return float(digits_mlp(full, report or (lambda step, value: False), fidelity=10)
                 ["val_accuracy"])


SPACES: dict[str, dict[str, Any]] = {
    "gbc_cancer": {
        "n_estimators": {"type": "int", "low": 20, "high": 200, "log": True},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
        "max_depth": {"type": "int", "low": 1, "high": 6},
        "subsample": {"type": "float", "low": 0.5, "high": 1.0},
    },
    "svc_digits": {
        "C": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
        "gamma": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    },
    "rf_digits": {
        "n_estimators": {"type": "int", "low": 10, "high": 150, "log": True},
        "max_depth": {"type": "int", "low": 2, "high": 24, "log": True},
        "max_features": {"type": "float", "low": 0.05, "high": 1.0},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 10},
    },
    "mlp_digits": {
        "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
        "width": {"type": "int", "low": 16, "high": 256, "log": True},
        "depth": {"type": "int", "low": 1, "high": 3},
        "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    },
}


@dataclass(frozen=True)
class Task:
    """One benchmark task: its asap objective and space, and Optuna's view of both."""

    name: str
    objective: Callable[[dict[str, Any], Any], float]
    space: dict[str, Any]

    def optuna_objective(self) -> Callable[[Any], float]:
        """The same objective as an Optuna user writes it: ``suggest_*`` over the same space."""
        def objective(trial: Any) -> float:
            return self.objective(suggest(trial, self.space), None)
        return objective


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """A configuration from an Optuna trial's ``suggest_*`` calls over a space dict."""
    config: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "float":
            config[name] = trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False))
        elif p["type"] == "int":
            config[name] = trial.suggest_int(name, p["low"], p["high"], log=p.get("log", False))
        else:
            config[name] = trial.suggest_categorical(name, p["choices"])
    return config


TASKS = {name: Task(name, globals()[name], space) for name, space in SPACES.items()}
