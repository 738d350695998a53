"""The HPO tools as typed LangChain tools bound to one study.

Each tool answers with JSON: the ``ToolMessage`` content is the JSON text of the same object its
artifact holds (``response_format="content_and_artifact"``), so an agent reads configurations
and results as data, not prose (``{"tool": "optuna:tpe", "configs": [...]}``; ``{"trial": 0,
"status": "complete", "value": 0.87, ...}``). Failures come back as ``{"error": ...}``, never a
stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from asap.tools.hpo.panel import algorithms
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.hpo.space import CategoricalParam, FloatParam, Space, SpaceError
from asap.tools.ledger.study import Study
from asap.tools.trials.trainer import Trainer

Sampler = Literal[algorithms("optuna")]  # type: ignore[valid-type]
NgOptimizer = Literal[algorithms("nevergrad")]  # type: ignore[valid-type]


class OptunaSuggestArgs(BaseModel):
    """Ask an Optuna sampler for configurations; it has learned from every finished trial."""

    sampler: Sampler = Field(description="one of " + ", ".join(algorithms("optuna")))
    n: int = Field(default=1, ge=1, le=8, description="how many configurations to propose")


class NevergradSuggestArgs(BaseModel):
    """Ask a Nevergrad optimizer for configurations; it has been told every finished trial."""

    optimizer: NgOptimizer = Field(description="NGOpt, CMA, DE, TwoPointsDE, PSO, OnePlusOne, ...")
    n: int = Field(default=1, ge=1, le=8, description="how many configurations to propose")


class LLMProposeArgs(BaseModel):
    """Propose a configuration of your own; it is checked against the search space."""

    params: dict[str, Any] = Field(description="parameter name -> value, active parameters only")


class TrainArgs(BaseModel):
    """Train the workload on one configuration and record the trial in the ledger."""

    params: dict[str, Any] = Field(description="a configuration valid in the search space")
    fidelity: int | None = Field(default=None, ge=1, description="epochs/steps; default if omitted")
    tool: str = Field(default="llm", description="which tool proposed this configuration")


class StopArgs(BaseModel):
    """End the tuning session now, because more trials will not improve the best value."""

    reason: str = Field(default="", description="why more trials will not help")


def params_model(space: Space) -> type[BaseModel]:
    """The search space as the type of a ``params`` argument: each parameter with its type,
    bounds or choices and a description, conditional ones optional (and saying when they
    apply). What a tool-calling model is given, so it can propose valid configurations; the
    space itself still validates what it sends."""
    fields: dict[str, Any] = {}
    for i, p in enumerate(space.params):
        about = p.describe() + (f"; only when {p.when.describe()}, else leave it out"
                                if p.when else "")
        if isinstance(p, CategoricalParam):
            kind: Any = Literal[tuple(p.choices)]
        elif isinstance(p, FloatParam):
            kind = Annotated[float, Field(ge=p.low, le=p.high)]
        else:
            kind = Annotated[int, Field(ge=p.low, le=p.high)]
        extra = dict(default=None) if p.when else {}
        fields[f"p{i}"] = (kind | None if p.when else kind,
                           Field(alias=p.name, description=about, **extra))
    return create_model("Params", __doc__="A configuration of the search space.",
                        __config__=ConfigDict(extra="forbid", populate_by_name=True), **fields)


def _typed(schema: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    """``schema``'s JSON schema with ``params`` typed by the space (``params``: its schema) (inline: no ``$ref``, which
    some servers' tool parsers do not follow). A JSON-schema ``args_schema`` is what the model
    is given; LangChain passes the arguments through unvalidated, and the space validates them
    (a bad configuration is a structured ``{"error"}`` answer, never an exception)."""
    out = schema.model_json_schema()
    out["properties"]["params"] = params
    out["title"] = schema.__name__
    return out


def _answer(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A tool's answer: its JSON text for the model, the same object as the artifact."""
    return json.dumps(data), data


def stop_tool() -> BaseTool:
    """The ``stop`` tool the LLM calls to end a session (the graph acts on it, not the tool)."""
    return StructuredTool.from_function(func=lambda reason="": "stopping", name="stop",
                                        args_schema=StopArgs, description=StopArgs.__doc__)


@dataclass
class Toolbox:
    """The study, its optimizers and its trainer: everything the tools act on."""

    study: Study
    portfolio: Portfolio
    trainer: Trainer

    def suggest(self, library: str, algorithm: str, n: int) -> tuple[str, dict[str, Any]]:
        start = self.study.clock.now()
        configs = self.portfolio.ask(library, algorithm, n)
        tool = f"{library}:{algorithm}"
        self.study.log_timing("tool_call", start, self.study.clock.now(), tool=tool, n=n)
        return _answer({"tool": tool, "configs": configs})

    def propose(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            config = self.study.space.validate(config)
        except SpaceError as exc:
            return _answer({"tool": "llm", "error": f"invalid configuration: {exc}"})
        return _answer({"tool": "llm", "configs": [config]})

    def train(self, config: dict[str, Any], fidelity: int | None = None,
              tool: str = "llm") -> tuple[str, dict[str, Any]]:
        try:
            trial = self.trainer.run(config, tool=tool, fidelity=fidelity)
        except SpaceError as exc:
            return _answer({"error": f"not trained, invalid configuration: {exc}"})
        self.portfolio.sync()
        return _answer({"trial": trial.number, "status": trial.status,
                        "metric": self.study.metric, "value": trial.value,
                        "metrics": trial.metrics, "config": trial.evaluated,
                        "error": trial.error, "duration": trial.duration})

    def _checked(self, schema: type[BaseModel], args: dict[str, Any],
                 then: Any) -> tuple[str, dict[str, Any]]:
        """Arguments a JSON-schema tool received unvalidated, checked against ``schema``: a
        wrong one is a structured error naming it, as a bad configuration is."""
        try:
            return then(schema.model_validate(args))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            return _answer({"error": f"invalid argument {where!r}: {err['msg']}"})

    def tools(self) -> list[BaseTool]:
        """The four tools as LangChain ``BaseTool``s, usable by any tool-calling agent. Each
        description names the search space, and ``params`` is typed by it
        (:func:`params_model`): a model bound to these tools knows the names, types, ranges,
        choices and conditions it may propose."""
        space = self.study.space
        about = (f"\nThe search space ({self.study.direction} {self.study.metric}):\n"
                 + space.describe())
        params = {k: v for k, v in params_model(space).model_json_schema().items()
                  if k != "title"}  # built once, shared by llm_propose and train_on_gpu
        params["description"] = "a configuration of the search space: active parameters only"

        def make(fn, name: str, schema: type[BaseModel]) -> BaseTool:
            args = _typed(schema, params) if "params" in schema.model_fields else schema
            return StructuredTool.from_function(func=fn, name=name, args_schema=args,
                                                description=(schema.__doc__ or "") + about,
                                                response_format="content_and_artifact")
        # The config argument is called ``params``: LangChain reserves ``config`` (RunnableConfig).
        return [
            make(lambda sampler, n=1: self.suggest("optuna", sampler, n), "optuna_suggest",
                 OptunaSuggestArgs),
            make(lambda optimizer, n=1: self.suggest("nevergrad", optimizer, n),
                 "nevergrad_suggest", NevergradSuggestArgs),
            make(lambda **args: self._checked(LLMProposeArgs, args, lambda a: self.propose(
                a.params)), "llm_propose", LLMProposeArgs),
            make(lambda **args: self._checked(TrainArgs, args, lambda a: self.train(
                a.params, a.fidelity, a.tool)), "train_on_gpu", TrainArgs),
        ]
