"""One validated configuration for a tuning session; CLI flags and the Python API map onto it.

Why pydantic: every bad value (a zero trial budget, a negative time scale, an unknown protocol)
fails before anything starts, with a message naming the field.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from asap.tools.types import DEFAULT_DB, STUDY_NAME, redact, safe_name

AUTO = "auto"  # --decide auto: probe the model once
# Sobol points beside the panel in the initial design: ahead by trials and in the first
# simulated 15 minutes of the dev grid, level after (docs/decision-loop.md)
DESIGN = "optuna:qmc"


def decide_choices() -> list[str]:
    """``--decide``'s names: ``auto`` and every registered decision protocol (imported here, not
    with this module: the protocols import the LLM client, and ``asap --help`` should not)."""
    from asap.agent.llm.protocols import PROTOCOLS
    return [AUTO, *PROTOCOLS]


def _decide_schema(schema: dict[str, Any]) -> None:
    """``--decide``'s names and help, from the protocol registry."""
    from asap.agent.llm.protocols import PROTOCOLS
    schema["enum"] = decide_choices()
    schema["description"] = "how the LLM answers: " + ", ".join(
        [*(f"{name} ({p.summary})" for name, p in PROTOCOLS.items()),
         f"{AUTO} (ask the model once which of tools and json it speaks)"])
ProposalStyle = Literal["brief", "full"]  # proposal lines without / with their configurations
PromptMode = Literal["stable", "naive"]  # naive: a status header rewritten every round (ablation)
Backend = Literal["local", "ray"]  # where trials run: worker processes here, or Ray tasks


BASE_URL_ENV, MODEL_ENV = "ASAP_BASE_URL", "ASAP_MODEL"


def endpoint_from_env(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the LLM endpoint from ``ASAP_BASE_URL`` / ``ASAP_MODEL`` when they name
    none: what ``asap tune``, ``asap chat`` and the served graphs (langgraph.json's ``env``)
    read alike. A ``base_url`` given wins; with neither, the embedded server."""
    if settings.get("base_url") or not os.environ.get(BASE_URL_ENV):
        return settings
    return {**settings, "base_url": os.environ[BASE_URL_ENV],
            "model": settings.get("model") or os.environ.get(MODEL_ENV, "default")}


class ConfigError(ValueError):
    """A session setting is invalid; the message names the setting."""


class TuneConfig(BaseModel):
    """Budgets, endpoint and switches of one ``asap tune`` session."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # inf/nan: never meant

    workload: str = Field(min_length=1)
    trials: int = Field(default=20, ge=1, le=100_000, description="trial budget")
    time_budget_s: float | None = Field(default=None, gt=0,
                                        description="wall-clock budget in seconds; a trial "
                                        "still running when it ends is stopped")
    trial_timeout_s: float = Field(default=600.0, gt=0,
                                   description="per-trial time limit in seconds")
    study: str | None = Field(default=None,
                              description="study name (default: from the workload; letters, "
                              "digits, . _ -); re-run to resume")
    db: str = Field(default=DEFAULT_DB, description="ledger file (SQLite): trials, timings, "
                    "events")
    space: str | None = Field(default=None, description="search space file (YAML/JSON)")
    llm: bool = Field(default=True, description="off: the panel and the prior "
                      "decide every round with no endpoint and no server started")
    cost_weight: float | Literal["cool"] = Field(
        default=0.0, description="how much a proposal's predicted training time weighs in the "
        "prior's ranking: EI per second**w; 'cool': w from 1 to 0 over the time budget "
        "(CArBO); 0 (default): EI alone. With a time budget "
        "a trial's EI is also scaled by the share of the time left it would leave")
    width: int = Field(default=2, ge=1, le=8, description="proposals each tool makes per "
                       "round (past the first, the cheap tools only: not TPE); the prior "
                       "ranks them all and the round shows its best 4")
    panel: str | None = Field(default=None, description="the tools that propose every round, "
                              "as library:algorithm, comma-separated (e.g. optuna:tpe,optuna:gp,"
                              "nevergrad:DE; a list in Python); default: optuna:tpe, "
                              "optuna:cmaes, nevergrad:NGOpt, nevergrad:DE")
    design: str | None = Field(default=DESIGN, description="a tool that proposes beside the "
                               "panel during the initial design, the first 10 trials per "
                               "numeric parameter (optuna:qmc: Sobol points; none: the panel "
                               "alone)")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint "
                                 "(default: the embedded llama.cpp server)")
    model: str | None = Field(default=None, description="model name at --base-url, or a GGUF "
                              "path for the embedded server")
    api_key: str | None = None
    llm_timeout_s: float = Field(default=120.0, gt=0, le=3600,
                                 description="seconds per LLM request; the client retries "
                                 "twice")
    decide: str = Field(default=AUTO, json_schema_extra=_decide_schema)  # help: the registry
    prompt: PromptMode = Field(default="stable", description="naive: a status header "
                               "rewritten each round (ablation)")
    proposals: ProposalStyle | None = Field(
        default=None, description="proposal lines: brief (tool, record, prediction) or full "
        "(with configurations); default brief for JSON decisions, full for tool calls")
    time_scale: float = Field(default=0.0, ge=0, description="tables sleep train_time x this "
                              "many real seconds (0: not at all)")
    clock: Literal["real", "virtual"] = Field(
        default="real", description="real: wall-clock time; virtual: each trial costs its "
        "simulated duration (a table's train_time) and sleeps not at all, the agent's own work "
        "its measured time; budgets and time stamps are read on it")
    max_steps: int = Field(default=6, ge=1, le=20, description="LLM calls per round, its "
                           "suggest-tool calls included, before the prior's pick trains")
    max_retries: int = Field(default=2, ge=0, le=10, description="answers with a problem "
                             "sent back per round before the prior's pick trains")
    pruner: Literal["none", "median", "sha", "hyperband"] = Field(
        default="none", description="stop trials early from their reported values: none, "
        "median (Optuna's MedianPruner), sha (successive halving), hyperband")
    speculation: Literal["auto", "off", "threshold", "lossless"] = Field(
        default="auto", description="decide the next round while the current trial trains: "
        "threshold (keep it when the prediction was within tau), lossless (verify it), off; "
        "auto: threshold unless training and the LLM share the CPU")
    tau: float = Field(default=0.05, ge=0, le=10, description="keep a speculative round when "
                       "|predicted-actual|/|actual| <= tau")
    context: int | None = Field(default=None, ge=2, le=1000,
                                description="rounds the prompt carries before compaction: N, "
                                "or auto (starts at 24, self-tuned)")
    depth: int | None = Field(default=None, ge=1, le=16,
                              description="speculative rounds chained ahead: N, or auto "
                              "(starts at 1, self-tuned 0-4; 0 while trials are too short "
                              "to pay)")
    plan: int | None = Field(default=None, ge=1, le=64,
                             description="rounds one LLM decision covers: N, or auto (starts "
                             "at 1, self-tuned up to 16 while the LLM is slower than training "
                             "or keeps taking the prior's pick)")
    seed: int = Field(default=0, ge=0, le=2**32 - 1,
                      description="seeds the tools' samplers (0 .. 2**32-1)")
    optuna_storage: str | None = Field(default=None, description="mirror every finished trial "
                                       "into this Optuna storage URL (sqlite:///optuna.db): "
                                       "watch it with optuna-dashboard URL")
    isolate: bool = Field(default=True, description="each trial in its own worker process; "
                          "False: in-process, for table lookups (no time limit, no crash guard)")
    reuse_workers: bool = Field(default=True, description="a worker that finished a trial "
                                "runs the next one (the objective's first-call costs paid once "
                                "per worker, as in-process); off: a fresh process per trial")
    workers: int | None = Field(default=None, ge=1, le=1024,
                                description="trials in flight at once; -1: one per core on a "
                                "CPU host, one per GPU on a GPU host (Optuna's n_jobs=-1); "
                                "None: one per GPU on a GPU host; on a CPU host 1, grown once "
                                "the first 3 trials have shown the cores they leave idle to "
                                "the workers that fill them (at most one per 5 trials left)")
    in_order: bool = Field(default=True, description="with several workers on the real "
                           "clock, results are taken in the order the trials started (one "
                           "that ends before an earlier one waits for it), so a seed gives "
                           "the same decisions whichever ends first; off: each as it ends (no "
                           "worker waits; the run depends on timing)")
    gpus_per_trial: float | None = Field(default=None, gt=0, le=64,
                                         description="GPUs each trial's worker gets (0.5: two "
                                         "trials share one); None: 1 on a GPU host")
    backend: Backend = Field(default="local", description="where trials run: "
                                              "worker processes here, or Ray tasks")
    ray_address: str | None = Field(default=None, description="a running Ray cluster "
                                    "(HOST:PORT, auto); None: a local Ray instance")
    selftune: bool = Field(default=True, description="retune tau, depth, the context and "
                           "the plan from the ledger's timings; off: keep them fixed (ablation)")
    decide_ahead: bool = Field(default=True, description="under a plan, ask the next plan's "
                               "decision while its rounds train; off: at the plan's end "
                               "(ablation)")
    prefetch: bool = Field(default=True, description="in the serial loop on the real clock, "
                           "ask the next round's tools while the trial trains; off: after it "
                           "lands (ablation; the decisions lossless speculation reproduces)")
    selftune_every: int = Field(default=4, ge=1, le=1000, description="finished trials "
                                "between self-tuning passes")
    ask: Literal["priced", "always"] = Field(
        default="priced", description="when the LLM is asked: priced (each call weighed "
        "against a trial's duration and what its departures from the prior have earned; a call "
        "that costs more than 5 %% of a trial is asked only at a stagnation point, in the "
        "background) or always (every round after llm_after, as an agent eval wants)")
    llm_after: int = Field(default=3, ge=0, le=1000, description="finished trials before the "
                           "LLM is asked on the critical path: before, the tools propose "
                           "start-up samples the prior cannot score, and the fallback picks")

    @field_validator("cost_weight")
    @classmethod
    def _weight_range(cls, v: float | str) -> float | str:
        if v != "cool" and not 0 <= v <= 4:
            raise ValueError(f"must be 'cool' or a number from 0 to 4, got {v!r}")
        return v

    @field_validator("panel", mode="before")
    @classmethod
    def _known_tools(cls, v: Any) -> str | None:
        from asap.tools.hpo.panel import TOOLS
        if v is None:
            return None
        names = [n.strip() for n in (v.split(",") if isinstance(v, str) else list(v))]
        unknown = [n for n in names if n not in TOOLS]
        if unknown or not names or len(set(names)) < len(names):
            raise ValueError(f"must name distinct tools among {list(TOOLS)}, got {names}")
        return ",".join(names)

    @field_validator("design")
    @classmethod
    def _known_tool(cls, v: str | None) -> str | None:
        from asap.tools.hpo.panel import TOOLS
        if v is None or v == "none":
            return None
        if v not in TOOLS:
            raise ValueError(f"must be none or name one tool among {list(TOOLS)}, got {v!r}")
        return v

    @field_validator("decide")
    @classmethod
    def _known_protocol(cls, v: str) -> str:
        if v not in (names := decide_choices()):
            raise ValueError(f"must be one of {names}, got {v!r}")
        return v

    @field_validator("workers", mode="before")
    @classmethod
    def _every_core(cls, v: object) -> object:
        if v == -1 or v == "-1":
            from asap.tools.trials.resources import every_core
            return every_core()
        return v

    @field_validator("llm", mode="before")
    @classmethod
    def _on_off(cls, v: object) -> object:
        return {"on": True, "off": False}.get(v, v) if isinstance(v, str) else v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.fullmatch(r"https?://[^/\s]+\S*", v):
            raise ValueError("must be an http(s) URL with no spaces, such as "
                             f"http://127.0.0.1:8000/v1, got {redact(v)!r}")
        if "@" in v.split("/")[2]:  # user:password@host: the key goes elsewhere
            raise ValueError(f"carries credentials ({redact(v)!r}); give the key in "
                             "OPENAI_API_KEY, not in the URL")
        return v

    @field_validator("study")
    @classmethod
    def _safe_study(cls, v: str | None) -> str | None:
        if v is not None and not STUDY_NAME.match(v):
            raise ValueError(f"{v!r} is not a study name: use up to 128 letters, digits, '.', "
                             f"'_' or '-', starting with a letter or digit (e.g. {safe_name(v)!r})")
        return v

    @field_validator("clock")
    @classmethod
    def _virtual_alone(cls, v: str, info) -> str:
        if v == "virtual" and info.data.get("time_scale"):
            raise ValueError("the virtual clock sleeps not at all; --time-scale sleeps real "
                             "seconds: use one or the other")
        return v

    @field_validator("ray_address")
    @classmethod
    def _needs_ray(cls, v: str | None, info) -> str | None:
        if v is not None and info.data.get("backend") != "ray":
            raise ValueError("is only read with backend='ray' (--backend ray)")
        return v

    @property
    def study_name(self) -> str:
        return self.study or safe_name(self.workload)

    @property
    def trials_here(self) -> bool:
        """The objective runs in this process (``isolate=False``, no Ray), beside the tuner."""
        return not self.isolate and self.backend == "local"

    @property
    def forks_workers(self) -> bool:
        """Trials run in worker processes forked from this machine's fork server (``isolate``,
        no Ray): the server that imports the objective's module is worth starting early."""
        return self.isolate and self.backend == "local"

    @classmethod
    def make(cls, **values: object) -> TuneConfig:
        """Validate, turning pydantic's report into one line per bad setting."""
        try:
            return cls(**values)
        except ValidationError as exc:
            lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise ConfigError("invalid setting: " + "; ".join(lines)) from None
