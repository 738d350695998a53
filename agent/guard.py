"""The guard: every LLM answer is checked before anything trains, and a round always ends.

The session's decision protocol (:mod:`asap.agent.llm.protocols`) checks each answer in its own
terms (a label, a tool call, a configuration inside the search space) and says what goes back
when something is wrong; :func:`attribute` names whose proposal an answer copied. The graph
bounds the retries and then lets :func:`fallback` decide, so a session never stalls and never
trains an invalid configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from asap.agent.prior.fit import encode, off_centre
from asap.tools.hpo.portfolio import Offer
from asap.tools.hpo.space import format_value as fmt
from asap.tools.ledger.study import Study


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as the prompt shows them: an LLM copies floats at the prompt's 6 digits."""
    return a.keys() == b.keys() and all(fmt(a[k]) == fmt(b[k]) for k in a)


def attribute(config: dict[str, Any], offers: Sequence[Offer], claimed: str | None = None) -> Offer:
    """The offer ``config`` copies (its tool and exact values), else the LLM's own config.

    Two tools can offer the same config (random start-up samples); the tool the LLM named wins,
    then the latest offer (what it just asked for).
    """
    matches = [(tool, offered) for tool, offered in offers if same_config(config, offered)]
    named = [m for m in matches if m[0] == claimed]
    return (named or matches or [("llm", config)])[-1]


TWIN = 0.1  # closer than this share of the unit cube's diagonal to a trial: its near-twin


def fallback(study: Study, proposals: Sequence[Offer], scored: bool = False) -> Offer:
    """What trains when the LLM does not decide: the prior's pick (A) once the prior has scored
    the round; before that (the first trials: nothing is known of values or costs), the
    proposal nearest the centre of the space (:func:`~asap.agent.prior.fit.off_centre`) that is
    not a near-twin of a trial the study already has (:data:`TWIN`; any proposal when all are).

    Why the centre: a typical configuration costs a typical time, where a random start-up
    sample can cost the extreme (on HPOBench car, TPE's first sample trained for 31 minutes,
    and a 15-minute budget ended with no result); the first point of a Sobol design, and the
    default configuration SMAC runs first, sit there too. Why not its twin: the tools propose
    around the centre too (Nevergrad's first asks, CMA-ES's mean), so the most central proposal
    is often one that already ran, and with N workers the first N would all be one point.
    Deterministic: ties go to the earlier proposal.
    """
    if scored:
        return proposals[0]
    taken = [encode(study.space, t.config) for t in study.trials()]
    apart = [offer for offer in proposals if not _twin(encode(study.space, offer[1]), taken)]
    return min(apart or proposals, key=lambda offer: off_centre(study.space, offer[1]))


def _twin(point: list[float], taken: list[list[float]]) -> bool:
    """Whether ``point`` is within :data:`TWIN` of the diagonal of one of ``taken``."""
    near = TWIN * math.sqrt(len(point))
    return any(math.dist(point, other) < near for other in taken)
