"""What a served graph's client may choose, and what only its operator decides.

Why: a LangGraph server (``langgraph dev``, a deployment) hands graph input to whoever calls it.
The operator's configuration (the server's environment: langgraph.json's ``env``) fixes the LLM
endpoint and its key, the ledger, the folder of space files, the workloads clients may name and
the caps on trials, workers and time; a client chooses within that: a study name, a workload
from the list, and the settings that change only how the search runs. A client that names an
endpoint would receive the server's API key with every prompt; one that names a module would
make the server import and run it; one that names a path would read or write the server's
files. In-process callers (``build_tune_graph()`` in your own app, ``asap tune``) are the
operator and keep every setting.

The operator's variables:

- ``ASAP_BASE_URL`` / ``ASAP_MODEL``: the endpoint (the key: ``OPENAI_API_KEY``), as before;
- ``ASAP_DB``: the ledger (default ``asap.db``);
- ``ASAP_SPACES``: the folder whose ``NAME.yaml`` files a client may name as ``space: NAME``;
- ``ASAP_WORKLOADS``: comma-separated ``package.module:function`` references clients may name,
  beside the built-ins and the tables;
- ``ASAP_MAX_TRIALS`` (default 1000), ``ASAP_MAX_WORKERS`` (default: the cores),
  ``ASAP_MAX_TIME_S`` (default: none): caps on a task.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from asap.agent.config import ConfigError
from asap.tools.trials.resources import default_workers, every_core, usable_cores
from asap.tools.types import DEFAULT_DB, STUDY_NAME
from asap.tools.workloads import BUILTIN, is_tabular

# The settings a client may choose: how the search runs. Everything else in TuneConfig (the
# endpoint, the model and its key, the ledger, the mirror, where trials run) is the operator's.
CLIENT_SETTINGS = frozenset({
    "time_budget_s", "trial_timeout_s", "study", "space", "llm", "cost_weight", "width",
    "llm_timeout_s", "decide", "prompt", "proposals", "time_scale", "clock", "max_retries",
    "pruner", "speculation", "tau", "context", "depth", "plan", "seed", "workers", "selftune",
    "decide_ahead", "prefetch", "selftune_every", "ask", "llm_after", "panel", "max_steps"})


class PolicyError(ConfigError):
    """A client asked for what only the server's operator decides, or past a cap."""


class ServerPolicy(BaseModel):
    """The operator's decisions for a served graph (:func:`from_env` reads them)."""

    model_config = ConfigDict(frozen=True)

    db: str = DEFAULT_DB
    spaces: Path | None = None  # the folder of space files clients may name; None: none
    workloads: frozenset[str] = frozenset()  # user workloads registered by the operator
    max_trials: int = Field(default=1000, ge=1)
    max_workers: int = Field(default_factory=usable_cores, ge=1)
    max_time_s: float | None = Field(default=None, gt=0)

    @classmethod
    def from_env(cls) -> ServerPolicy:
        """The policy the server's environment sets; a malformed variable is a ConfigError
        naming it."""
        env = os.environ
        values: dict[str, Any] = {"db": env.get("ASAP_DB", DEFAULT_DB)}
        if env.get("ASAP_SPACES"):
            values["spaces"] = Path(env["ASAP_SPACES"])
        values["workloads"] = frozenset(w.strip() for w in env.get("ASAP_WORKLOADS", "")
                                        .split(",") if w.strip())
        for var, key, kind in (("ASAP_MAX_TRIALS", "max_trials", int),
                               ("ASAP_MAX_WORKERS", "max_workers", int),
                               ("ASAP_MAX_TIME_S", "max_time_s", float)):
            if env.get(var):
                try:
                    values[key] = kind(env[var])
                except ValueError:
                    raise ConfigError(f"{var} must be a number, got {env[var]!r}") from None
        try:
            return cls(**values)
        except ValueError as exc:
            raise ConfigError(f"the server's asap settings are invalid: {exc}") from None

    def task(self, workload: str, trials: int, settings: dict[str, Any]) -> dict[str, Any]:
        """A client's task as the operator allows it: the settings to run it with (the ledger,
        the space file's path), or a :class:`PolicyError` naming what is refused. Nothing a
        client sends is imported, opened or sent anywhere before this has passed it."""
        operator = sorted(set(settings) - CLIENT_SETTINGS)
        if operator:
            raise PolicyError(f"{', '.join(map(repr, operator))}: set by the server's operator "
                              "(its environment), not by a client; a client may set "
                              + ", ".join(sorted(CLIENT_SETTINGS)))
        if not (workload in BUILTIN or is_tabular(workload) or workload in self.workloads):
            raise PolicyError(f"workload {workload[:80]!r} is not served here: name a built-in "
                              f"({', '.join(sorted(BUILTIN))}), a table (hpobench:<dataset>, "
                              "nasbench201:<dataset>) or one the operator registers in "
                              "ASAP_WORKLOADS")
        if trials > self.max_trials:
            raise PolicyError(f"trials: at most {self.max_trials} on this server, got {trials}")
        workers = settings.get("workers")
        if workers in (-1, "-1"):  # every core (or GPU): what it means here, checked below
            workers = every_core()
        if workers is not None and workers > self.max_workers:
            raise PolicyError(f"workers: at most {self.max_workers} on this server, got "
                              f"{workers}")
        if workers is None and every_core() > self.max_workers:
            # Unset, a session takes one worker per GPU, or grows to fill the cores: pinned
            # to what the default starts with, within the cap.
            workers = min(default_workers(), self.max_workers)
        if workers is not None:
            settings = {**settings, "workers": workers}
        budget = settings.get("time_budget_s")
        if self.max_time_s is not None and (budget is None or budget > self.max_time_s):
            settings = {**settings, "time_budget_s": min(budget or self.max_time_s,
                                                         self.max_time_s)}
        out = {**settings, "db": self.db}
        if (space := settings.get("space")) is not None:
            out["space"] = str(self._space_file(space))
        return out

    def _space_file(self, name: Any) -> Path:
        """A space a client names: a file of the operator's space folder, by name only."""
        if self.spaces is None:
            raise PolicyError("space: this server takes no space files from clients (the "
                              "operator can set ASAP_SPACES to a folder of NAME.yaml files)")
        if not isinstance(name, str) or not STUDY_NAME.match(name):
            raise PolicyError("space: the name of a space file in the server's space folder "
                              "(letters, digits, '.', '_', '-'), not a path")
        path = self.spaces / f"{name}.yaml"
        if not path.is_file():
            raise PolicyError(f"space: no space named {name!r} on this server")
        return path

