"""Progress of ``asap.optimize`` on stderr: a bar on a terminal, a line per trial otherwise.

Why: ``study.optimize`` users watch a run move; a session of minutes with nothing on the screen
reads as a hang. stderr, so a script's own stdout stays its own.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from asap.graphs.callbacks import TuneCallback
from asap.tools.ledger.study import Study
from asap.tools.types import Trial


class TrialLines(TuneCallback):
    """One update per finished trial: its result and the best so far."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        self.total, self.done = total, 0
        self.console = console or Console(stderr=True)
        self._bar: Progress | None = None
        self._task: Any = None

    def on_session_start(self, study: Study, total: int, protocol: Any) -> None:
        if self.console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
            self._bar.start()
            # completed: a call that runs several sessions (a define-by-run space growing)
            self._task = self._bar.add_task(study.name, total=self.total, completed=self.done)

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        self.done += 1
        best = study.best()
        text = (f"trial {trial.number} {trial.status}"
                + (f": {study.metric} {trial.value:.6g}" if trial.value is not None else "")
                + (f" (best {best.value:.6g}, trial {best.number})" if best else "")
                + f" [{tool}]")
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{study.name}: {text}")
        else:
            self.console.print(f"[{self.done}/{self.total}] {text}", highlight=False,
                               markup=False)

    def on_session_end(self, study: Study | None, interrupted: bool) -> None:
        if self._bar is not None:
            self._bar.stop()
