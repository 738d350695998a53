"""Imported by the trainer's fork server as it starts: reads the tables named in
``ASAP_PRELOAD_TABLES`` (``bench:dataset``, comma-separated) once, so every trial's worker forks
with them in memory instead of reading them again."""

from __future__ import annotations

import os

from asap.tools.workloads import tabular

for _ref in filter(None, os.environ.get("ASAP_PRELOAD_TABLES", "").split(",")):
    _bench, _, _dataset = _ref.partition(":")
    try:
        tabular._table(_bench, _dataset)
    except Exception:  # noqa: BLE001 - a worker reads it itself then, and reports what is wrong
        pass
