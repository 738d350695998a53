"""How many workers fill this machine's cores, judged from the trials' own CPU use.

Why: most scikit-learn objectives keep one core busy, and a small torch model about one; one
trial at a time then leaves the other cores idle, as Optuna's ``n_jobs=1`` does. A session
whose workers are not set measures its first trials' CPU seconds in their workers and, where
those trials left cores idle while training set the pace, grows to the workers that fill the
cores (:func:`grow_to`): the largest wall-clock gain the machine has to give. Trials land in the
order they started (``in_order``), so a seed still gives the same decisions on the same machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

MEASURED = 3  # trials measured before the session decides
TRIALS_PER_WORKER = 5  # at most one worker per five trials left: most decisions see most results
PACED_BY_TRAINING = 0.5  # below this share of the stretch trials cover, the tuner sets the pace


def busy(rows: Sequence[dict[str, Any]]) -> float | None:
    """The cores a trial kept busy: the median over ``rows`` (the ledger's ``train`` timing
    rows) of a trial's CPU seconds, every thread's, over its seconds; None when unmeasured."""
    ratios = [r["detail"]["cpu_s"] / (r["end"] - r["start"]) for r in rows
              if "cpu_s" in r["detail"] and r["end"] > r["start"]]
    return statistics.median(ratios) if ratios else None


def filling(busy: float, cores: int) -> int:
    """The workers whose trials, each keeping ``busy`` cores busy, fill ``cores``."""
    return max(1, min(cores, round(cores / max(busy, 1e-9))))


def training_share(rows: Sequence[dict[str, Any]]) -> float:
    """The trials' summed seconds over the stretch from the first one's start to the last
    one's end: near 1 one at a time when training sets the pace, low when the gaps between
    trials (the tuner's own time) do."""
    if not rows:
        return 0.0
    stretch = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return sum(r["end"] - r["start"] for r in rows) / stretch if stretch > 0 else 0.0


def grow_to(rows: Sequence[dict[str, Any]], cores: int, workers: int, left: int) -> int | None:
    """The workers a session with ``workers`` should grow to, from its ``rows`` (at least
    :data:`MEASURED` ``train`` timing rows with their CPU seconds), on ``cores`` cores with
    ``left`` trials to start; None to stay. It grows where the trials left a core idle and
    training set the pace, to the workers that fill the cores, at most one per
    :data:`TRIALS_PER_WORKER` trials left."""
    measured = [r for r in rows if "cpu_s" in r["detail"]]
    if len(measured) < MEASURED or training_share(measured) < PACED_BY_TRAINING:
        return None
    share = busy(measured)
    if share is None:
        return None
    target = min(filling(share, cores), max(1, left // TRIALS_PER_WORKER))
    return target if target > workers else None
