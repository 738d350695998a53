"""Trials on a Ray cluster: each one a Ray task with the resources it asks for.

Why Ray and not a home-made scheduler: placing a trial on a node with a free GPU, restarting
nothing that died, reporting a lost node: Ray does it. asap keeps what is its own: the driver
(this process) alone writes the ledger (SQLite stays on the driver), supervises each trial's
intermediate values for pruning, enforces time limits, and turns every way a trial can end
(exception, NaN, a worker or node that died) into a finished row with its reason.

Intermediate values travel through one async :class:`_Channel` actor per session: the trial's
``report(step, value)`` waits there for the driver's prune answer, as the local worker's pipe
does. ``ray`` is an optional extra: ``pip install "asap-hpo[ray]"``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from asap.tools.trials.backend import Ending, Launch, Report, TrialBackend, TrialRun
from asap.tools.trials.resources import ResourceError, Slot
from asap.tools.trials.workers import describe
from asap.tools.workloads import call, load_target

LOST = "worker lost"  # how a trial whose Ray worker or node died is failed


class RayError(RuntimeError):
    """Ray is missing, or the cluster cannot be reached or used; the message says which."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError('--backend ray needs Ray: pip install "asap-hpo[ray]"') from None
    return ray


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with the address in the message, when nothing answers there (``ray.init``
    itself retries for a minute or more before it gives up)."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"--ray-address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayError(f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); "
                       "start it with `ray start --head` or check --ray-address") from None


def _loopback(address: str | None) -> bool:
    """A local instance (None), or a cluster on this machine's loopback."""
    if address is None:
        return True
    host = address.rpartition(":")[0] or address
    return host in ("localhost", "::1") or host.startswith("127.")


def _keep_loopback(ray: Any) -> None:
    """Make Ray keep 127.0.0.1 as this node's address.

    Why: Ray swaps a loopback node or cluster address for the machine's outward IP (so that
    other machines could join) and then listens there; asap never binds beyond loopback unless
    the user names a cluster elsewhere. Ray's own switch for a single-machine instance is this
    variable (read by the processes it starts, and once at import by the driver)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


@contextlib.contextmanager
def ray_cluster(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected to the cluster at ``address`` or to a local instance started here (on
    127.0.0.1 only, no dashboard); a local instance is shut down on exit."""
    ray = _ray()
    if address:
        check_address(address)
    if _loopback(address):
        _keep_loopback(ray)
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                      configure_logging=False)
        if address:
            kwargs["address"] = address
        else:  # a new local instance (never one found running here), loopback only
            kwargs |= dict(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1")
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here
            raise RayError(f"cannot start or join Ray ({address or 'local'}): "
                           f"{type(exc).__name__}: {exc}{_auth_hint(address)}") from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _auth_hint(address: str | None) -> str:
    """What to try when joining a cluster fails with Ray's token authentication unset here:
    a cluster started by ``ray start`` requires a token (Ray 2.60's does), and a driver naming
    an address sends one only when ``RAY_AUTH_MODE=token`` is set (Ray's own rule, kept)."""
    if not address or address == "local" or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return ("; if the cluster uses token authentication (`ray start` turns it on), set "
            "RAY_AUTH_MODE=token: Ray then sends the token from ~/.ray/auth_token or "
            "RAY_AUTH_TOKEN")


def ray_slots(ray: Any, workers: int | None, gpus_per_trial: float | None) -> list[Slot]:
    """N slots on the cluster; the default N is one per GPU (by ``gpus_per_trial``) or 1.
    More GPUs than the cluster has is an error naming both."""
    gpus = ray.cluster_resources().get("GPU", 0.0)
    per = gpus_per_trial or (1.0 if gpus else 0.0)
    if gpus_per_trial and not gpus:
        raise ResourceError(f"--gpus-per-trial {gpus_per_trial:g} asks for GPUs, and the Ray "
                            "cluster has none")
    n = workers or (max(1, int(gpus // per + 1e-9)) if per else 1)
    if per and n * per > gpus + 1e-9:
        raise ResourceError(f"{n} workers x {per:g} GPU(s) per trial need {n * per:g} GPUs; "
                            f"the Ray cluster has {gpus:g}")
    return [Slot(i) for i in range(n)]


class RayBackend(TrialBackend):
    """Trials as Ray tasks (``num_gpus``/``num_cpus`` each) on the cluster Ray is connected to
    (see :func:`ray_cluster`): ``Trainer(study, workload, backend=RayBackend(...))``."""

    name = "ray"

    def __init__(self, *, gpus_per_trial: float = 0.0, cpus_per_trial: float = 1.0) -> None:
        ray = _ray()
        self._ray = ray
        self._options = dict(num_gpus=gpus_per_trial, num_cpus=cpus_per_trial, max_retries=0)
        self._channel = ray.remote(_Channel).options(num_cpus=0).remote()

    def start(self, launch: Launch, report: Report) -> TrialRun:
        wl = launch.workload
        task = self._ray.remote(_run_trial).options(**self._options)
        ref = task.remote(wl.target, launch.config, launch.fidelity, wl.kwargs, os.getcwd(),
                          launch.seed, launch.trial_id, self._channel, launch.number)
        return _RayRun(self._ray, ref, self._channel, launch.trial_id, report)


class _RayRun(TrialRun):
    """A Ray task and the channel its reports come through."""

    def __init__(self, ray: Any, ref: Any, channel: Any, trial_id: int, report: Report) -> None:
        self.ray, self.ref, self.channel, self.trial_id, self.report = (
            ray, ref, channel, trial_id, report)
        self.finished = False

    def poll(self, timeout_s: float) -> Ending | None:
        ray = self.ray
        for step, value in ray.get(self.channel.take.remote(self.trial_id)):
            self.channel.answer.remote(self.trial_id, step, self.report(step, value))
        done, _ = ray.wait([self.ref], timeout=timeout_s)
        if not done:
            return None
        self.finished = True
        try:
            metrics, self.ran_s = ray.get(self.ref)
            return "done", metrics
        except Exception as exc:  # noqa: BLE001 - every ending is a readable row
            return "error", _ray_reason(ray, exc)

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            with contextlib.suppress(Exception):
                self.ray.cancel(self.ref, force=True)  # kills the worker: a GPU freed

    def close(self) -> None:
        self.cancel()


def _ray_reason(ray: Any, exc: Exception) -> str:
    """Why a Ray task ended without a result, as one line: the workload's own exception, or a
    worker/node that died ("worker lost")."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return describe(cause)
    lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError, ray.exceptions.TaskCancelledError)
    if isinstance(exc, lost):
        return f"{LOST}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return f"{LOST}: {type(exc).__name__}: {str(exc)[:200]}"


def _run_trial(target: Any, config: dict, fidelity: int | None, kwargs: dict, cwd: str,
               seed: int, trial_id: int, channel: Any, number: int | None = None) -> Any:
    """Runs on a Ray worker: the workload, its reports answered by the driver; what it returned
    and how long it ran here (the driver's clock would count the task's wait for a worker)."""
    import ray
    if cwd not in sys.path:  # a user module beside the tuner (same path on every node)
        sys.path.insert(0, cwd)

    def report(step: int, value: float) -> bool:
        return bool(ray.get(channel.report.remote(trial_id, int(step), float(value))))

    fn = load_target(target) if isinstance(target, str) else target
    began = time.perf_counter()
    return call(fn, config, report, fidelity, kwargs, seed, number), time.perf_counter() - began


class _Channel:
    """The session's report channel (an async Ray actor): a trial's ``report`` waits here until
    the driver has recorded the value and answered whether to prune."""

    def __init__(self) -> None:
        import asyncio
        self._asyncio = asyncio
        self._inbox: dict[int, list[tuple[int, float]]] = {}
        self._waiting: dict[tuple[int, int], Any] = {}

    async def report(self, trial_id: int, step: int, value: float) -> bool:
        future = self._asyncio.get_running_loop().create_future()
        self._waiting[(trial_id, step)] = future
        self._inbox.setdefault(trial_id, []).append((step, value))
        return await future

    async def take(self, trial_id: int) -> list[tuple[int, float]]:
        return self._inbox.pop(trial_id, [])

    async def answer(self, trial_id: int, step: int, stop: bool) -> None:
        future = self._waiting.pop((trial_id, step), None)
        if future is not None and not future.done():
            future.set_result(stop)
