"""The JSON decision protocol: what a round's answer may say, as schema and as a typed value.

The schema goes to the server as ``response_format`` (llama.cpp grammars, vLLM guided decoding
enforce it while decoding; a llama.cpp server gets the same as a GBNF ``grammar``); :func:`parse_decision` reads the answer back and names what is wrong,
so the guard can send the problem to the LLM.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from asap.tools.hpo.space import Space


class DecisionError(ValueError):
    """The LLM's answer is not a usable decision; the message says why (it goes back to the LLM)."""


class Decision(BaseModel):
    """What the LLM decided this round: train a labelled proposal, its own config, or stop."""

    action: Literal["train", "own", "stop"]
    choice: str | None = None
    params: dict[str, Any] | None = None


def decision_schema(labels: list[str]) -> dict[str, Any]:
    """One round's decision as JSON schema: one JSON string, a proposal's label, ``"own"`` (your
    configuration follows, :func:`own_schema`) or ``"stop"``.

    Why a bare string: an object costs the decoder its keys and, since a JSON grammar allows
    free whitespace, the pretty-printing a small model adds. Measured on SmolLM2 under
    llama.cpp, 12 rounds of a hpobench prompt: the object schema ({"action": "train",
    "choice": "A"}, one closed object per action) decoded 23 tokens a decision, this one 9
    (llama.cpp's JSON mode lets the model wrap it in a code fence) and as a GBNF grammar
    (:func:`label_grammar`) 4. With "own" in the same enum SmolLM2 still answers "A"; with an
    own-config object beside the labels (anyOf), it wrote its own configuration every round.
    """
    return {"enum": [*labels, "own", "stop"]}


def label_grammar(labels: list[str]) -> str:
    """:func:`decision_schema` as a llama.cpp GBNF grammar: the quoted label and nothing else
    (no fence, no whitespace), for servers that take ``grammar``."""
    options = " | ".join(json.dumps(json.dumps(x)) for x in [*labels, "own", "stop"])
    return f"root ::= {options}"


def own_schema(space: Space) -> dict[str, Any]:
    """The second step of an ``"own"`` decision: the configuration itself."""
    return space.json_schema()


def is_own(text: str) -> bool:
    """Whether an answer is the bare ``"own"`` that asks for the configuration step."""
    try:
        return json.loads(text) == "own"
    except (json.JSONDecodeError, TypeError):
        return False


def parse_decision(text: str, labels: list[str]) -> Decision:
    """The JSON answer as a :class:`Decision`; :class:`DecisionError` names what is wrong.

    A bare string is a label or ``"stop"``; an object is the long form (``{"action": "train",
    "choice": "B"}``, ``{"action": "own", "params": {...}}``, ``{"action": "stop"}``), which
    the "own" step produces and servers without a grammar may still send."""
    try:
        data = json.loads(text)
        if isinstance(data, str):
            data = ({"action": "stop"} if data == "stop" else {"action": "own"} if data == "own"
                    else {"action": "train", "choice": data})
        decision = Decision.model_validate(data)
    except json.JSONDecodeError as exc:
        raise DecisionError(f"the answer is not JSON ({exc.msg} at {exc.pos}): {text[:120]!r}") from None
    except ValidationError as exc:
        raise DecisionError(f"the answer does not match the decision schema: {exc.errors()[0]['msg']}") from None
    if decision.action == "train" and decision.choice not in labels:
        raise DecisionError(f"unknown proposal {decision.choice!r}; choose one of {labels}")
    if decision.action == "own" and not decision.params:
        raise DecisionError("action 'own' needs 'params' with your configuration")
    return decision
