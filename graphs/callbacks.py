"""What a tuning session tells the outside while it runs: :class:`TuneCallback` hooks, and the
callbacks a session adds itself (all of them in order, the Optuna mirror kept current).

Why hooks and not prints: the CLI's live display, ``asap.optimize``'s progress bar, the chat's
stream and a LangGraph server's custom events all read the same session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asap.tools.ledger.study import Study
from asap.tools.types import Trial

if TYPE_CHECKING:  # the mirror imports SQLAlchemy: loaded by the sessions that mirror
    from asap.tools.ledger.optuna_mirror import OptunaMirror


class TuneCallback:
    """Hooks a session calls as it runs; each does nothing unless overridden."""

    def on_message(self, text: str) -> None:
        """A line worth showing a person (resuming a study, starting the embedded server)."""

    def on_session_start(self, study: Study, total: int, protocol: str | None) -> None:
        """The study is open and the LLM reachable; ``total`` trials is the budget."""

    def on_trial_start(self, study: Study, number: int, config: dict[str, Any], tool: str
                       ) -> None:
        """Trial ``number`` started training ``config`` (proposed by ``tool``)."""

    def on_report(self, study: Study, number: int, step: int, value: float) -> None:
        """Trial ``number`` reported an intermediate ``value`` at ``step`` (an epoch...)."""

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        """A trial finished (complete, failed or pruned); ``tool`` proposed it."""

    def on_decision(self, study: Study, decision: dict[str, Any]) -> None:
        """A round was decided and its trial started: ``decision`` is the ledger's ``decision``
        event (round, trial, by, choice, the tool and configuration trained, the offers)."""

    def on_phase(self, study: Study, phase: str) -> None:
        """What the session waits on now: ``"tools"`` (the tools propose and the prior ranks),
        ``"llm"`` (a decision on the critical path) or ``"training"`` (the trials in flight)."""

    def on_session_end(self, study: Study | None, interrupted: bool) -> None:
        """The session is over (also after an error or Ctrl-C)."""


def progress_events(study: Study, say: TuneCallback):
    """The trainer's progress events as the session's callbacks."""
    def progress(event: str, number: int, data: dict[str, Any]) -> None:
        if event == "start":
            say.on_trial_start(study, number, data["config"], data["tool"])
        else:
            say.on_report(study, number, data["step"], data["value"])
    return progress


class Mirroring(TuneCallback):
    """Keeps an Optuna storage mirror of the study current (``--optuna-storage``)."""

    def __init__(self, mirror: OptunaMirror, say: TuneCallback) -> None:
        self.mirror, self.say, self.failing = mirror, say, False

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        self._sync(study)

    def on_session_end(self, study: Study | None, interrupted: bool) -> None:
        if study is not None:
            self._sync(study)

    def _sync(self, study: Study) -> None:
        """A failing mirror never ends the session: logged (a ``mirror_error`` event), told
        once, retried at the next trial; the next sync that works catches up."""
        why = self.mirror.try_sync()
        if why is not None:
            study.log_event("mirror_error", reason=why)
            if not self.failing:
                self.say.on_message(f"the Optuna mirror failed ({why}); the ledger has every "
                                    "trial, the mirror is retried after each one")
        self.failing = why is not None


class Fanout(TuneCallback):
    """Every callback of a session, called in order."""

    def __init__(self, callbacks: Sequence[TuneCallback]) -> None:
        self.callbacks = list(callbacks)

    def on_message(self, text: str) -> None:
        for c in self.callbacks:
            c.on_message(text)

    def on_session_start(self, study: Study, total: int, protocol: str | None) -> None:
        for c in self.callbacks:
            c.on_session_start(study, total, protocol)

    def on_trial_start(self, study: Study, number: int, config: dict[str, Any], tool: str
                       ) -> None:
        for c in self.callbacks:
            c.on_trial_start(study, number, config, tool)

    def on_report(self, study: Study, number: int, step: int, value: float) -> None:
        for c in self.callbacks:
            c.on_report(study, number, step, value)

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        for c in self.callbacks:
            c.on_trial_complete(study, trial, tool)

    def on_phase(self, study: Study, phase: str) -> None:
        for c in self.callbacks:
            c.on_phase(study, phase)

    def on_decision(self, study: Study, decision: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_decision(study, decision)

    def on_session_end(self, study: Study | None, interrupted: bool) -> None:
        for c in self.callbacks:
            c.on_session_end(study, interrupted)
