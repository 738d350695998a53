"""Whether another process of this machine is alive: what tells a running trial that another
process still owns from one left behind by a process that died."""

from __future__ import annotations

import os
from typing import Any


def alive_elsewhere(pid: Any, start: Any = None) -> bool:
    """Whether ``pid`` is another process of this machine that is still running, and the same
    one that started the trial: a pid is reused once its process is gone, so its start time
    (when the trial recorded one) must match too."""
    return (isinstance(pid, int) and pid != os.getpid() and process_alive(pid)
            and (start is None or process_start(pid) == start))


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux's /proc); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is still running on this machine; a killed one not yet reaped
    (a zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(pid, 0) said it exists


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its children, theirs, ...), from Linux's
    ``/proc/<pid>/task/<tid>/children``; empty elsewhere or once ``pid`` is gone."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            stack += kids
    return found
