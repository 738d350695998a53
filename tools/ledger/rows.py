"""How a trial is stored in the ledger's rows and read back: metrics as JSON (a non-finite value
as null), errors bounded, rows as :class:`~asap.tools.types.Trial`."""

from __future__ import annotations

import json
import math
from typing import Any

from asap.tools.types import Trial

MAX_ERROR_CHARS = 2000  # a workload's exception text can be megabytes; its tail says most


class LedgerError(RuntimeError):
    """The ledger cannot do what was asked (unknown study, bad state change, locked file, a
    value it cannot store...)."""


def bounded(error: str | None) -> str | None:
    """An error as the ledger stores it: at most :data:`MAX_ERROR_CHARS`, head and tail kept."""
    if error is None or len(error) <= MAX_ERROR_CHARS:
        return error
    half = MAX_ERROR_CHARS // 2 - 20
    return f"{error[:half]} ... [{len(error) - 2 * half} characters cut] ... {error[-half:]}"


def json_metrics(metrics: dict[str, float]) -> str:
    """Metrics as JSON: a non-finite value (JSON has no NaN) is stored as null, unknown."""
    return json.dumps({k: v if math.isfinite(v) else None for k, v in metrics.items()},
                      allow_nan=False)


def num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        raise LedgerError(f"metric value {str(v)[:60]!r} is not a number") from None


def to_trial(row: dict[str, Any]) -> Trial:
    return Trial(
        id=row["id"], number=row["number"], config=json.loads(row["config"]), tool=row["tool"],
        status=row["status"], value=row["value"], metrics=json.loads(row["metrics"] or "{}"),
        intermediate={int(k): v for k, v in json.loads(row["intermediate"] or "{}").items()},
        error=row["error"], fidelity=row["fidelity"], started_at=row["started_at"],
        ended_at=row["ended_at"], duration=row["duration"], meta=json.loads(row["meta"] or "{}"),
    )
