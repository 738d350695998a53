"""A study mirrored into an Optuna storage: optuna-dashboard, ``optuna.load_study``, importance.

Why: most people who would pick asap already watch their studies in optuna-dashboard and read
them with Optuna. The ledger stays the source of truth; the mirror receives each finished trial
(params with the distributions the space gives them, inactive conditional parameters absent as
Optuna's define-by-run records them, value, state, intermediate values, its own start and
completion times) with the tool that proposed it as the ``tool`` user attribute. Running trials
are not mirrored until they finish.

Example::

    mirror = OptunaMirror(study, "sqlite:///optuna.db")
    mirror.sync()  # idempotent: adds the trials not mirrored yet
"""

from __future__ import annotations

import json
from datetime import datetime

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState, create_trial

from asap.tools.hpo.optimizer import quiet
from asap.tools.hpo.optuna_tool import STATES, distributions
from asap.tools.ledger.study import LedgerError, Study
from asap.tools.types import Trial, redact

_IGNORED = {"category": optuna.exceptions.ExperimentalWarning}
SPACE_ATTR = "asap_space"  # the study's space (JSON) as a study user attribute
NUMBER_ATTR = "asap_number"  # the ledger's trial number, on each mirrored trial


class MirrorError(LedgerError):
    """The Optuna storage cannot be opened, or holds this study with another space."""


def check_storage(url: str, name: str, space_json: str, direction: str
                  ) -> tuple[optuna.storages.RDBStorage, optuna.Study | None]:
    """Open the storage and vet a study ``name`` already in it (same space and direction);
    creates no study, so a session checks this before it writes anything. Returns the storage
    and the existing Optuna study (None when there is none yet)."""
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds
        first = redact((str(exc).splitlines() or [""])[0][:200], url)
        raise MirrorError(f"cannot open the Optuna storage {redact(url)!r}: "
                          f"{type(exc).__name__}: {first}") from None
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return storage, None
    with quiet(_IGNORED):
        target = optuna.load_study(study_name=name, storage=storage)
    theirs = target.user_attrs.get(SPACE_ATTR)
    if theirs is None or json.loads(theirs) != json.loads(space_json):
        raise MirrorError(f"the Optuna storage {redact(url)} already has a study '{name}' "
                          "with another search space; mirror into another storage or study name")
    if target.direction.name.lower() != direction:
        raise MirrorError(f"the Optuna study '{name}' in {redact(url)} "
                          f"{target.direction.name.lower()}s; this one {direction}s")
    return storage, target


def frozen(study: Study, trial: Trial) -> optuna.trial.FrozenTrial:
    """A finished ledger trial as Optuna records it (``add_trial``), telling what happened:
    the params are the configuration evaluated (a table's grid point; the proposal, when it
    differs, is the ``proposed`` user attribute), the start and completion are the trial's own
    (on the session's clock), and a pruned trial's value is its last intermediate value, as
    Optuna's ``tell`` would record it."""
    state = STATES[trial.status]
    steps = {int(k): float(v) for k, v in trial.intermediate.items()}
    value = trial.value if state == TrialState.COMPLETE else None
    if state == TrialState.PRUNED and steps:
        value = steps[max(steps)]
    params = {k: v if k in study.space.names and study.space[k].fits(v)
              else trial.config.get(k, v)
              for k, v in trial.evaluated.items()}
    extra = {"proposed": trial.config} if params != trial.config else {}
    if params != trial.evaluated:  # a grid point outside the space (a pinned choice, snapped)
        extra["evaluated"] = trial.evaluated
    out = create_trial(
        state=state, value=value, params=params,
        distributions=distributions(study.space, params), intermediate_values=steps,
        user_attrs={"tool": trial.tool, NUMBER_ATTR: trial.number, **extra,
                    **({"error": trial.error[:500]} if trial.error else {}),
                    **trial.meta.get("user_attrs", {})})  # a define-by-run trial's own
    out.number = trial.number  # the ledger's (a storage numbers the trials it adds itself)
    out.datetime_start = datetime.fromtimestamp(trial.started_at)
    if trial.ended_at is not None:
        out.datetime_complete = datetime.fromtimestamp(trial.ended_at)
    return out


def in_memory(study: Study) -> optuna.Study:
    """The study's finished trials in an in-memory Optuna study (importance, Optuna's plots)."""
    with quiet(_IGNORED):
        target = optuna.create_study(direction=study.direction)
        for trial in study.trials(status=("complete", "failed", "pruned")):
            target.add_trial(frozen(study, trial))
    return target


def importances(study: Study) -> tuple[optuna.Study, dict[str, float]]:
    """fANOVA importances (seed 0, the numbers optuna-dashboard shows) of the study's parameters
    over its complete trials, and the in-memory mirror they were computed on (for Optuna's own
    plot). A ``ValueError`` says why there are none: fewer than two complete trials, no
    parameter they share, or fANOVA failing."""
    if len(study.trials(status="complete")) < 2:
        raise ValueError("parameter importance needs at least 2 complete trials")
    mirrored = in_memory(study)
    try:
        scores = optuna.importance.get_param_importances(
            mirrored, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"parameter importance could not be computed: {exc}") from None
    if not scores:
        raise ValueError("no parameter is shared by the complete trials")
    return mirrored, scores


class OptunaMirror:
    """One asap study mirrored into one Optuna storage (any RDB URL Optuna takes)."""

    def __init__(self, study: Study, url: str) -> None:
        self.study, self.url = study, url
        self.storage, existing = check_storage(url, study.name, study.space.to_json(),
                                               study.direction)
        self.created = existing is None
        with quiet(_IGNORED):
            if existing is not None:
                self.target = existing
            else:
                self.target = optuna.create_study(study_name=study.name, storage=self.storage,
                                                  direction=study.direction)
                self.target.set_user_attr(SPACE_ATTR, study.space.to_json())
                self.target.set_user_attr("asap_metric", study.metric)

    def sync(self) -> int:
        """Add the finished trials not mirrored yet, in trial order; returns how many."""
        have = {t.user_attrs.get(NUMBER_ATTR) for t in self.target.get_trials(deepcopy=False)}
        added = 0
        for trial in self.study.trials(status=("complete", "failed", "pruned")):
            if trial.number in have:
                continue
            with quiet(_IGNORED):
                self.target.add_trial(frozen(self.study, trial))
            added += 1
        return added

    def try_sync(self) -> str | None:
        """:meth:`sync`, with a failing storage (a deleted file, a lock held for long, a
        database that went away) reported instead of raised: the ledger is the record and a
        later sync adds whatever this one missed. Returns why it failed, or None."""
        try:
            self.sync()
        except (optuna.exceptions.OptunaError, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return None

    def drop_if_empty(self) -> None:
        """Remove the Optuna study this mirror created when nothing was mirrored into it (the
        session was refused after the mirror opened): nothing half-written stays behind."""
        if self.created and not self.target.get_trials(deepcopy=False):
            optuna.delete_study(study_name=self.study.name, storage=self.storage)
