"""The chat's plan: from a gathered request to the session the person is asked to confirm.

Nothing is written here: the plan carries its search space as data, and the chat writes the
space file only after the person's yes (:func:`write_space`), into a directory its caller gives.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from asap.agent.config import TuneConfig
from asap.tools.hpo.params import CategoricalParam
from asap.tools.hpo.space import Space, SpaceError, format_value
from asap.tools.hpo.space_edit import ALIASES, canonical, narrow, pin, propose_space, restrict
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.workloads import BUILTIN, is_tabular, resolve


def is_user_code(ref: str) -> bool:
    """A ``module:function`` reference (the person's own code), not a built-in or a table."""
    return ":" in ref and not is_tabular(ref)


def missing(request: dict[str, Any]) -> str | None:
    """The question to ask next, or None when the request is complete."""
    if not request.get("workload"):
        return ("What should I tune? Name the workload: a built-in (" + ", ".join(BUILTIN)
                + ", hpobench:<dataset>) or your code as module:function.")
    if is_user_code(request["workload"]) and not request.get("metric"):
        return "Which metric does your function return, and should it go up or down?"
    if not request.get("trials") and not request.get("minutes"):
        return "What budget: how many trials, or how many minutes?"
    return None


def make_plan(request: dict[str, Any], *, study: str, space: Space | None = None
              ) -> dict[str, Any]:
    """The session to propose: workload, study, space (as data), budget. Plain JSON types, so a
    checkpointer stores it as it is."""
    ref = request["workload"]
    builtin = not is_user_code(ref)
    metric, direction = request.get("metric"), request.get("direction")
    pinned: dict[str, Any] = {}
    if space is None and request.get("space_file"):
        space = Space.from_file(request["space_file"])
    ranges = request.get("ranges") or {}
    if builtin:
        wl = resolve(ref)
        metric, direction = wl.metric, wl.direction
    if space is None and builtin:
        space = wl.space
        if request.get("params"):  # named ones only; a range names one to keep tuned too
            keep = match([*request["params"], *ranges], space)
            space, pinned = restrict(space, list(dict.fromkeys(keep)), wl.defaults)
    elif space is None:
        named = list(dict.fromkeys([*(request.get("params") or []), *ranges]))
        space, unknown = propose_space(named)
        if unknown:
            raise SpaceError(f"I know no range for {unknown}: give one, or a space file")
    space = with_ranges(space, ranges, inside=builtin)
    if not pinned:  # a space given whole (narrowed, re-pinned): its single choices are the pins
        pinned = {p.name: p.choices[0] for p in space.params
                  if isinstance(p, CategoricalParam) and len(p.choices) == 1}
    if not builtin:
        direction = direction or ("minimize" if re.search(r"loss|error|rmse|mae", metric or "")
                                  else "maximize")
    minutes = request.get("minutes")
    plan = {"workload": ref, "study": study, "metric": metric, "direction": direction,
            "pinned": pinned, "fixed": _fixed(space, pinned), "params": space.to_dict(),
            "space": space.describe(free_only=True),
            "trials": int(request.get("trials") or 1000),
            "time_budget_s": float(minutes) * 60 if minutes else None}
    TuneConfig.make(workload=ref, trials=plan["trials"], time_budget_s=plan["time_budget_s"])
    return plan


def with_ranges(space: Space, ranges: dict[str, list[float]], inside: bool) -> Space:
    """``space`` with each named parameter's range set to the person's ``[low, high]``; the
    other parameters stay as they are (still tuned). ``inside``: a built-in workload's ranges
    are its limits, so a new one must lie inside; the ranges proposed for a person's own code
    are only a practitioner's guess, so theirs replaces it."""
    for raw, (low, high) in ranges.items():
        space = narrow(space, match([raw], space)[0], low, high, inside=inside)
    return space


def repin(study: Study, value: str, name: str | None = None) -> Space:
    """The study's space with a choice fixed to ``value`` ("try sgd instead of adam").

    When the chat pinned that parameter for the study (so ``value`` is not among its choices
    any more), a built-in workload's full space supplies it: the study's free parameters stay
    free, the others keep their pins or the workload's defaults, and parameters the new value
    switches on (momentum, for sgd) come back at their defaults."""
    try:
        return pin(study.space, value, name)
    except SpaceError:
        if not study.workload or is_user_code(study.workload):
            raise
    wl = resolve(study.workload)
    full = pin(wl.space, value, name)  # names the problem when no parameter has the value
    changed = next(p.name for p in full.params if isinstance(p, CategoricalParam)
                   and len(p.choices) == 1 and p.name in wl.space.names
                   and len(wl.space[p.name].choices) > 1)
    single = {p.name: p.choices[0] for p in study.space.params
              if isinstance(p, CategoricalParam) and len(p.choices) == 1}
    free = [n for n in study.space.names if n not in single and n != changed]
    space, _ = restrict(full, free, {**wl.defaults, **single, changed: full[changed].choices[0]})
    return space


def plan_of(study: Study) -> dict[str, Any]:
    """The plan that runs ``study`` again (to extend it): its workload, space and trials, and
    the values its space pins (one choice), shown as the first plan showed them."""
    pinned = {p.name: p.choices[0] for p in study.space.params
              if isinstance(p, CategoricalParam) and len(p.choices) == 1}
    return {"workload": study.workload, "study": study.name, "metric": study.metric,
            "direction": study.direction, "pinned": pinned,
            "fixed": _fixed(study.space, pinned),
            "params": study.space.to_dict(), "space": study.space.describe(free_only=True),
            "trials": len(study.finished_ids()), "time_budget_s": None}


def budget_text(plan: dict[str, Any]) -> str:
    """The plan's budget as a person reads it: "2 more trials (6 in all)", "20 trials"..."""
    def trials(n: int) -> str:
        return f"{n} trial" + ("" if n == 1 else "s")
    if plan.get("more"):
        text = f"{plan['more']} more {trials(plan['more']).split()[1]} ({plan['trials']} in all)"
    else:
        text = trials(plan["trials"]) if plan["trials"] < 1000 else "no trial limit"
    if plan.get("time_budget_s"):
        text += f", {plan['time_budget_s'] / 60:g} minutes"
    return text


def _fixed(space: Space, pinned: dict[str, Any]) -> str:
    """The pinned values for people; a conditional one says when it applies."""
    parts = []
    for name, value in pinned.items():
        p = space[name]
        cond = f" (when {p.when.describe()})" if p.when is not None else ""
        parts.append(f"{name}={format_value(value)}{cond}")
    return ", ".join(parts)


def write_space(plan: dict[str, Any], directory: Path) -> Path:
    """The confirmed plan's space as ``{study}.space.yaml`` in ``directory`` (what ``asap tune
    --space`` reads, so the person can re-run the session without the chat)."""
    path = directory / f"{plan['study']}.space.yaml"
    path.write_text(yaml.safe_dump({"metric": plan["metric"], "direction": plan["direction"],
                                    "params": plan["params"]}, sort_keys=False))
    return path


def match(names: list[str], space: Space) -> list[str]:
    """Space parameters for the person's words ("learning rate" -> lr or learning_rate_init)."""
    out = []
    for raw in names:
        key = canonical(raw)  # "lr" also reads as its spelled-out alias, "learning_rate"
        keys = {raw.strip().lower().replace(" ", "_").replace("-", "_"), key} | {
            a.replace(" ", "_").replace("-", "_") for a, c in ALIASES.items() if c == key}
        hits = [n for n in space.names if any(n == k or k in n for k in keys)]
        if not hits:
            raise SpaceError(f"'{raw}' is not a parameter of this workload ({space.names})")
        out.append(hits[0])
    return out


def new_study_name(db: str, ref: str, directory: Path) -> str:
    """``chat-<workload>-<n>``, the first n that names neither a study nor a space file."""
    ledger = Ledger(db)
    stem = "chat-" + re.sub(r"[^A-Za-z0-9]+", "-", ref).strip("-")
    n = 1
    while ledger.has_study(f"{stem}-{n}") or (directory / f"{stem}-{n}.space.yaml").exists():
        n += 1
    return f"{stem}-{n}"
