"""What each of N trial workers may use: its GPUs, or its share of the CPU cores.

Why a plan made up front: a trial that grabs every GPU (or every core) makes N workers fight
over one device, so each worker gets a fixed slot, the same for every trial it runs: on a GPU
host its own ``CUDA_VISIBLE_DEVICES`` (``gpus_per_trial`` GPUs, or a share of one when it is
fractional), on a CPU host ``cores // N`` torch threads. Bad requests (zero workers, more GPUs
than exist) fail here, before a study is opened.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class ResourceError(ValueError):
    """The workers asked for do not fit this machine; the message says what is there."""


@dataclass(frozen=True)
class Slot:
    """One worker's resources: ``gpus`` (indices among the visible ones) or ``threads``."""

    index: int
    gpus: tuple[int, ...] = ()
    threads: int | None = None  # torch threads on a CPU host; None: torch's default

    def env(self) -> dict[str, str]:
        """The environment a trial on this slot runs with (its GPUs, as the tuner sees them)."""
        if not self.gpus:
            return {}
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(max(self.gpus) + 1)]
        return {"CUDA_VISIBLE_DEVICES": ",".join(ids[i] for i in self.gpus)}

    def describe(self) -> str:
        if self.gpus:
            return f"GPU {','.join(map(str, self.gpus))}"
        return f"{self.threads} CPU thread{'s' if self.threads != 1 else ''}" if self.threads \
            else "CPU"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or taskset sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(loadavg: str = "/proc/loadavg", samples: int = 5, every_s: float = 2e-4) -> int:
    """The cores other processes leave free right now: the usable cores less the tasks the
    kernel counts as runnable (``/proc/loadavg``'s fourth field, median of a few reads, this
    reader excluded); all of them where that count cannot be read.

    Why: a trial with as many compute threads as cores, on a machine whose cores are busy, waits
    at every parallel region for a thread the scheduler has not run (OpenMP spins meanwhile),
    and slows far more than in proportion (README, "Tools").
    """
    cores = usable_cores()
    counts = []
    for _ in range(samples):
        try:
            with open(loadavg) as f:
                counts.append(int(f.read().split()[3].partition("/")[0]))
        except (OSError, IndexError, ValueError):
            return cores
        time.sleep(every_s)
    others = max(0, sorted(counts)[len(counts) // 2] - 1)
    return max(1, cores - others)


@contextlib.contextmanager
def one_thread_pools() -> Iterator[None]:
    """The tuner's own BLAS and OpenMP pools at one thread while trials train elsewhere, as
    they were after.

    Why: the tuner's linear algebra is small (the prior's Gaussian processes over tens to
    hundreds of points) and gains nothing from a second thread, while an OpenBLAS pool's idle
    thread spins after each call, on the core the trial's worker needs (measured in
    docs/decision-loop.md, "Measurements behind the defaults"). scipy's pool, the one the
    prior's GP uses, is loaded first (the panel's Nevergrad imports it in round 1 anyway), since
    a limit holds only for pools loaded when it is set.
    """
    import scipy.linalg  # noqa: F401 - loads the pool, so the limit reaches it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@contextlib.contextmanager
def one_thread_blas() -> Iterator[Callable[[], contextlib.AbstractContextManager[Any]]]:
    """The BLAS pools at one thread for the tuner's own work, in a process where the objective
    runs too (``isolate=False``); yields what gives the objective the pools as they were, for
    the length of its call.

    Why: as in a worker's tuner (:func:`one_thread_pools`), the prior's small linear algebra
    gains nothing from a second thread and its idle pool threads spin after each call, on the
    cores the next trial needs; the objective's own BLAS keeps its threads. OpenMP pools (torch's
    intra-op threads) are left alone: they are per calling thread, and the tuner has none.
    """
    import scipy.linalg  # noqa: F401 - loads the pool, so the limit reaches it
    from threadpoolctl import ThreadpoolController

    pools = ThreadpoolController()
    before = {lib.filepath: lib.num_threads for lib in pools.lib_controllers
              if lib.user_api == "blas"}
    with pools.limit(limits=1, user_api="blas"):
        yield lambda: pools.limit(limits=before)


def gpu_count() -> int:
    """GPUs torch can use here; 0 without an NVIDIA driver (checked first: importing torch in
    the tuner costs a second or two, for nothing on a CPU host)."""
    if shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_workers() -> int:
    """One worker per GPU on a GPU host, one on a CPU host (trials there share the cores)."""
    return max(1, gpu_count())


def every_core() -> int:
    """Optuna's ``n_jobs=-1`` ("every core") as workers: one per GPU on a GPU host, one per
    usable core on a CPU host (each then at one thread)."""
    return gpu_count() or usable_cores()


def plan_slots(workers: int, gpus_per_trial: float | None = None, *, gpus: int | None = None,
               cores: int | None = None) -> list[Slot]:
    """The N workers' slots. ``gpus``/``cores``: what the machine has (detected when None)."""
    if workers < 1:
        raise ResourceError(f"--workers must be at least 1, got {workers}")
    gpus = gpu_count() if gpus is None else gpus
    if gpus_per_trial is not None and not (gpus_per_trial > 0 and math.isfinite(gpus_per_trial)):
        raise ResourceError(f"--gpus-per-trial must be a positive number, got {gpus_per_trial}")
    if gpus == 0:
        if gpus_per_trial:
            raise ResourceError(f"--gpus-per-trial {gpus_per_trial:g} asks for GPUs, and this "
                                "machine has none that torch can use")
        if workers == 1:
            return [Slot(0)]
        cores = cores or os.cpu_count() or 1
        return [Slot(i, threads=max(1, cores // workers)) for i in range(workers)]
    per = gpus_per_trial or 1.0
    if per >= 1:
        if per != int(per):
            raise ResourceError(f"--gpus-per-trial {per:g}: above 1 it must be a whole number")
        need = workers * int(per)
        if need > gpus:
            raise ResourceError(f"{workers} workers x {int(per)} GPU(s) per trial need {need} "
                                f"GPUs; this machine has {gpus}")
        return [Slot(i, gpus=tuple(range(i * int(per), (i + 1) * int(per))))
                for i in range(workers)]
    share = int(1 / per + 1e-9)  # trials sharing one GPU
    if workers > gpus * share:
        raise ResourceError(f"{workers} workers at {per:g} GPU per trial need "
                            f"{math.ceil(workers / share)} GPUs; this machine has {gpus}")
    return [Slot(i, gpus=(i % gpus,)) for i in range(workers)]  # spread, then share
