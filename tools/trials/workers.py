"""The worker process a trial runs in, and the fork server every worker starts from.

Why a fork server with preloads: a fresh process per trial keeps trials isolated (a crash, an
out-of-memory or a timeout takes only that trial), and forking from a server that already
imported torch, the trainer, the tuner's main script and a table workload's table makes that
process start in ~20 ms (each worker importing and reading them itself took 2.9 s a trial).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import multiprocessing.forkserver
import multiprocessing.spawn
import multiprocessing.util
import os
import pickle
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asap.tools.trials.define_by_run import DefineByRun
from asap.tools.trials.processes import descendants, process_alive
from asap.tools.trials.resources import free_cores, usable_cores
from asap.tools.types import is_pruned, safe_name
from asap.tools.workloads import Workload, call, load_target

PRELOAD_ENV = "ASAP_PRELOAD_TABLES"  # read by asap.tools.workloads.preload in the fork server
MODULES_ENV = "ASAP_PRELOAD_MODULES"
MAIN_ENV = "ASAP_PRELOAD_MAIN"
MAIN_RUN_ENV = "ASAP_PRELOAD_MAIN_RUN"
_server_lock = threading.Lock()
_server: Preload | None = None  # what the running fork server preloaded
_live = 0  # workers alive, running or kept: the server is restarted only when there is none
STDLIB = frozenset(sys.stdlib_module_names)
_controller: tuple[int, Any] | None = None  # a worker's pools: (modules loaded then, controller)


@dataclass(frozen=True)
class Preload:
    """What the fork server loads once for every worker: modules to import (the objective's own
    module and what it imports), table workloads' tables (``bench:dataset``), and whether the
    objective needs the tuner's main script (it lives there, or refers to something there)."""

    modules: frozenset[str] = frozenset()
    tables: frozenset[str] = frozenset()
    main: bool = False

    def __or__(self, other: Preload) -> Preload:
        return Preload(self.modules | other.modules, self.tables | other.tables,
                       self.main or other.main)

    def covers(self, other: Preload) -> bool:
        return other.modules <= self.modules and other.tables <= self.tables \
            and self.main >= other.main


def fork_server(preload: Preload = Preload()) -> mp.context.BaseContext:
    """The forkserver context, its server started on the first trial rather than at import
    (once per process: later calls return the running one, restarted with more preloads when
    ``preload`` asks for modules it lacks and no worker of it runs).

    Why preloads: forking from a server that already imported the objective's module (and what
    that module imports: scikit-learn, torch) makes each worker start in milliseconds instead
    of importing them again every trial. Only
    what the workload needs is loaded: a scikit-learn objective's server does not import torch.
    """
    global _server
    ctx = mp.get_context("forkserver")
    with _server_lock:
        if _server is not None and not _server.covers(preload) and _live == 0:
            _let_go()
            preload, _server = preload | _server, None
        if _server is None:
            _own_temp_dir()
            # This module too: a worker unpickles its serve_trials, and its imports (the ledger's
            # sqlite-utils...) cost each worker ~0.35 s of CPU otherwise.
            ctx.set_forkserver_preload(["asap.tools.trials.workers", "asap.tools.workloads.preload"])
            # And the main script, which multiprocessing imports in every worker unless the
            # server has it (Python 3.11's "__main__" preload never receives its path, so we
            # pass it): run when the objective needs it, else a stand-in (a user's script that
            # calls asap.optimize with an imported objective, unguarded, must not run again).
            main = mp.spawn.get_preparation_data("asap").get("init_main_from_path")
            with _env({PRELOAD_ENV: ",".join(sorted(preload.tables)),
                       MODULES_ENV: ",".join(sorted(preload.modules)), MAIN_ENV: main or "",
                       MAIN_RUN_ENV: "1" if preload.main else ""}):
                multiprocessing.forkserver.ensure_running()
            _server = preload
    return ctx


def _let_go() -> None:
    """Forget the running fork server so the next call starts another: its alive pipe closed,
    it exits by itself. Not waited for (multiprocessing's own ``_stop`` waits for its pid, and
    in a process whose event loop reaps children, a LangGraph server's, that wait hung)."""
    server = multiprocessing.forkserver._forkserver  # noqa: SLF001 - no public restart
    with server._lock:  # noqa: SLF001
        if server._forkserver_alive_fd is not None:  # noqa: SLF001
            os.close(server._forkserver_alive_fd)  # noqa: SLF001
        address = server._forkserver_address  # noqa: SLF001
        server._forkserver_alive_fd = server._forkserver_pid = None  # noqa: SLF001
        server._forkserver_address = None  # noqa: SLF001
    if address and not multiprocessing.util.is_abstract_socket_namespace(address):
        with contextlib.suppress(OSError):
            os.unlink(address)


def worker_started(delta: int) -> None:
    """Count a worker in (+1) or out (-1), kept idle ones too: the fork server (their parent)
    is never restarted under one. A session's kept workers end with it (its trainer's close)."""
    global _live
    with _server_lock:
        _live += delta


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """``values`` in the environment while the fork server starts (it reads them), then the
    environment as it was."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _own_temp_dir() -> None:
    """Give multiprocessing a private temp folder named for this process, and remove the
    folders of this user's processes that are gone.

    Why: the fork server's socket lives in a ``pymp-*`` folder that only a normal exit removes;
    SIGKILLed sessions left one behind each. Named ``asap-mp-<pid>-<random>``, a later session
    can tell which are leftovers. Why random and made by ``mkdtemp`` (mode 0700, created new):
    the fork server does not authenticate, and the driver unpickles what a trial sends back, so
    a folder another local user could create first (a predictable name) would let them bind the
    socket and run code as this user.
    """
    base = Path(tempfile.gettempdir())
    for old in base.glob("asap-mp-*"):
        pid = old.name.split("-")[2]
        with contextlib.suppress(OSError):
            mine = old.is_dir() and not old.is_symlink() and old.stat().st_uid == os.getuid()
            if mine and pid.isdigit() and int(pid) != os.getpid() \
                    and not process_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    process = mp.current_process()
    if process._config.get("tempdir") is None:  # what multiprocessing.util.get_temp_dir reads
        mine = tempfile.mkdtemp(prefix=f"asap-mp-{os.getpid()}-", dir=base)
        process._config["tempdir"] = mine
        mp.util.Finalize(None, shutil.rmtree, args=(mine, True), exitpriority=-100)


def preload_of(workload: Workload) -> Preload:
    """What a workload's workers need loaded: a table workload's table, and what its target
    needs (:func:`preload_of_target`)."""
    kw = workload.kwargs
    tables = {f"{kw['bench']}:{kw['dataset']}"} if "bench" in kw and "dataset" in kw else set()
    return Preload(tables=frozenset(tables)) | preload_of_target(workload.target)


def preload_of_target(target: Any) -> Preload:
    """What a trial target's workers need loaded: the module it lives in (a module-level
    function's, or ``package.module`` of a reference) and what its body imports, and the main
    script only when the target's pickle names it (a script's own function)."""
    inner = target.objective if isinstance(target, DefineByRun) else target  # Optuna's, wrapped
    module = inner.partition(":")[0] if isinstance(inner, str) else \
        getattr(inner, "__module__", None)
    modules = {module} if module and module not in ("__main__", "__mp_main__") else set()
    if callable(inner):  # and what its body imports (an import inside the objective)
        modules |= body_imports(inner)
    return Preload(frozenset(modules), main=_names_main(target))


_MAIN_GUARD = re.compile(r"""__name__\s*==\s*['"]__main__['"]|['"]__main__['"]\s*==\s*__name__""")


def check_main_guard(objective: Callable[..., Any]) -> None:
    """Refuse, before anything runs, an objective of a script that calls ``optimize`` without
    the main guard: its trials' worker processes import the script, and each import would
    start the run again (multiprocessing stops that with a traceback in every trial)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(objective, "__module__", None) != "__main__" or not path:
        return
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if not _MAIN_GUARD.search(text):
        raise ValueError(f"{path} calls asap.optimize outside `if __name__ == \"__main__\":`; "
                         "its trials run in worker processes that import this script, so put "
                         "the call under that line (as multiprocessing needs), or pass "
                         "isolate=False to run the trials in this process")


def start_for(objective: Callable[..., Any]) -> None:
    """Start the fork server for ``objective``'s trials now: the imports of its module (torch,
    scikit-learn) load in the server while this process goes on (importing the graphs), and the
    session's own start finds it running. Nothing when the objective could not run in a worker
    (its caller says why)."""
    try:
        check_main_guard(objective)
        pickle.dumps(objective)
    except Exception:  # noqa: BLE001 - refused with its reason by asap.optimize
        return
    fork_server(preload_of_target(objective))


def _names_main(target: Any) -> bool:
    """Whether unpickling ``target`` in a worker needs the main script (pickled by reference,
    a script's function is ``__main__.fn``)."""
    if isinstance(target, str):
        return False
    try:
        return b"__main__" in pickle.dumps(target)
    except Exception:  # noqa: BLE001 - unpicklable here: the worker's start reports it
        return True


def body_imports(fn: Any) -> set[str]:
    """The absolute imports written inside a function's body (``import torch``, ``from x.y
    import z``): the modules its first call would load in every worker."""
    import dis

    code = getattr(fn, "__code__", None)
    if code is None:
        return set()
    found, stack = set(), [code]
    while stack:
        code = stack.pop()
        stack.extend(c for c in code.co_consts if hasattr(c, "co_code"))
        instructions = list(dis.get_instructions(code))
        for level, ins in zip(instructions, instructions[2:], strict=False):
            if ins.opname == "IMPORT_NAME" and level.argval == 0:  # level, fromlist, name
                found.add(ins.argval)
    return found


def imported_since(before: set[str]) -> list[str]:
    """The modules imported in this process since ``before`` was taken (what a trial's
    objective imported lazily, for the fork server to preload next time): the packages it had
    not loaded at all, whole names; the standard library's and the preloaded packages' own
    submodules are left out (cheap, and not worth starting the server again for)."""
    loaded = {n.partition(".")[0] for n in before}
    return sorted(n for n in set(sys.modules) - before
                  if n.partition(".")[0] not in loaded | STDLIB
                  and not n.startswith("_") and "__main__" not in n)


def serve_trials(conn, tuner: int, env: dict[str, str] | None = None) -> None:
    """Runs in the child: trials one after another as the pipe sends them (``None`` or a
    closed pipe ends it), each reporting its steps and obeying prune decisions.

    Why one process for several trials: a fresh process pays the objective's first-call costs
    again every trial (torch's thread pools and kernels, a dataset's load cached in a module);
    a worker kept for its slot pays them once, as an in-process Optuna study does, while a
    crash, an out-of-memory or a hang still takes only this process.
    """
    # Its own process group: what its trials start and leave running (a subprocess, a pool a
    # module keeps between calls, as scikit-learn's loky does) ends with it (stop_worker ends
    # the group), not left under pid 1.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    # The worker's slot: its GPUs (set before anything initializes CUDA; the fork server only
    # imported torch).
    os.environ.update(env or {})
    # A terminal's Ctrl-C reaches the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _kill_with_parent()
    _adopt_orphans()
    threading.Thread(target=_die_with, args=(tuner,), name="asap-watchdog", daemon=True).start()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        _run_trial(conn, *job)
    conn.close()


def _run_trial(conn, target: str, config: dict, fidelity: int | None, kwargs: dict, cwd: str,
               seed: int, log: str, threads: int | None, number: int | None = None) -> None:
    """One trial in this worker: its output to its log, its share of the cores, its result
    (or its failure, one line) sent back. Whether the worker runs another is the trainer's
    call (not after an out-of-memory)."""
    limit_threads(min(threads or usable_cores(), free_cores()))
    before = set(sys.modules)
    # What the workload prints goes to the trial's log, never to the tuner's stdout (--json).
    out = _open_log(log)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out
    if cwd not in sys.path:
        sys.path.insert(0, cwd)

    def report(step: int, value: float) -> bool:
        conn.send(("report", int(step), float(value)))
        stop = conn.recv()
        return bool(stop) or not math.isfinite(float(value))

    seed_globals(seed)
    cpu = cpu_seconds()
    try:
        fn = load_target(target)
        metrics = call(fn, config, report, fidelity, kwargs, seed, number)
        message: tuple = ("done", plain(metrics), imported_since(before))
    except MemoryError as exc:
        message = ("error", f"out of memory: {exc}")
    except BaseException as exc:  # noqa: BLE001 - everything becomes a readable failed trial
        message = ("pruned", None) if is_pruned(exc) else ("error", describe(exc))
    # The log complete and closed before the result goes (the trainer then keeps or removes
    # it); until the next trial, output goes nowhere.
    with contextlib.suppress(OSError, ValueError):
        out.flush()
        null = open(os.devnull, "w")  # noqa: SIM115 - the worker's output until the next trial
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        sys.stdout = sys.stderr = null
        out.close()
    conn.send(("cpu", cpu_seconds() - cpu))
    conn.send(message)


def seed_globals(seed: int) -> None:
    """Python's, NumPy's and (where imported) torch's global generators from the trial's seed.

    Why: a kept worker's generators carry on from the trials it ran before, and with several
    workers which worker runs a trial depends on which freed first; an objective's unseeded
    draws (a model's initial weights, a shuffle) would then differ from run to run. Seeded
    here, a trial draws the same whichever worker runs it."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if (torch := sys.modules.get("torch")) is not None:
        torch.manual_seed(seed)


def cpu_seconds() -> float:
    """The CPU seconds this process and its waited-for children have used, every thread's:
    over a trial, divided by its seconds, how many cores it kept busy."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def limit_threads(threads: int) -> None:
    """This process's pools at ``threads`` (a worker: its slot's share of the cores, less what
    other processes take now; an eval cell beside others: its share): torch's intra-op threads
    if torch is loaded, the BLAS and OpenMP pools already loaded (threadpoolctl), and the
    environment for those loaded later."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    with contextlib.suppress(ImportError):
        _pools().limit(limits=threads)


def _pools() -> Any:
    """threadpoolctl's view of the loaded BLAS and OpenMP pools, built again only when a module
    was imported since (a new pool comes with one). Why: building it scans every loaded
    library, which cost more than the limit itself on every trial (docs/decision-loop.md)."""
    global _controller
    if _controller is None or _controller[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController
        controller = ThreadpoolController()
        _controller = (len(sys.modules), controller)
    return _controller[1]


def plain(metrics: Any) -> Any:
    """What a workload returned, its numbers as Python numbers: a numpy scalar or a 0-d torch
    tensor becomes its ``.item()`` (a tensor sent whole through the pipe needs torch's shared
    memory on the other side; sent from a worker that is exiting, it arrived as a crash)."""
    def one(v: Any) -> Any:
        if not isinstance(v, bool | int | float) and getattr(v, "ndim", None) == 0 \
                and callable(getattr(v, "item", None)):
            return v.item()
        return v
    return {k: one(v) for k, v in metrics.items()} if isinstance(metrics, dict) else one(metrics)


def trial_log(ledger: str | Path, study: str, number: int) -> Path:
    """Where trial ``number``'s worker writes what the workload prints (stdout and stderr):
    ``<ledger>-logs/<study>/trial-<n>.log`` beside the ledger (the worker makes it). Kept, and
    named in the trial's meta as ``log``, when the workload printed something."""
    ledger = Path(ledger)
    base = (Path(tempfile.gettempdir()) / "asap-logs" if str(ledger) == ":memory:"
            else ledger.parent / f"{ledger.name}-logs")
    return base / safe_name(study) / f"trial-{number}.log"


def keep_log(log: Path) -> bool:
    """Whether the trial's log holds anything; if not, no empty file or folder is left."""
    if log.exists() and log.stat().st_size:
        return True
    log.unlink(missing_ok=True)
    for folder in (log.parent, log.parent.parent):
        with contextlib.suppress(OSError):  # not empty: another trial's log is there
            folder.rmdir()
    return False


def _open_log(log: str, tries: int = 5) -> Any:
    """The trial's log file, its folder made again if another trial's cleanup just removed it
    (an empty folder is removed after a quiet trial: another session's, or another worker's
    of this one, even while makedirs is between the two levels); /dev/null if it cannot be
    had."""
    for _ in range(tries):
        with contextlib.suppress(FileNotFoundError):
            os.makedirs(os.path.dirname(log), exist_ok=True)
            return open(log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    return open(os.devnull, "w")  # noqa: SIM115


def _kill_with_parent() -> None:
    """Linux: the kernel SIGKILLs this worker when its parent (the fork server, which exits when
    the tuner is gone) dies; needs no Python thread, so it holds even in C code that never
    releases the GIL. Elsewhere the watchdog thread alone."""
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _adopt_orphans() -> None:
    """Linux: processes a trial started and left behind (a ``setsid`` daemon whose parent
    exited) become this worker's children, not init's, so that stopping the worker finds and
    ends them (:func:`stop_worker`)."""
    _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def _prctl(option: int, value: int) -> None:
    """Linux's ``prctl(option, value)`` for this process; nothing elsewhere."""
    if sys.platform != "linux":
        return
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value)


def _die_with(tuner: int, every_s: float = 0.5) -> None:
    """Exit when the tuning process is gone (SIGKILLed, crashed): a worker is a grandchild (the
    fork server starts it), so nothing else stops it, and on a GPU host it would hold the
    device's memory and keep computing for a session that no longer exists."""
    while process_alive(tuner):
        time.sleep(every_s)
    os._exit(1)


def describe(exc: BaseException) -> str:
    """A workload's exception as a failed trial's reason: one line, out-of-memory and NaN named."""
    name = type(exc).__name__
    if "OutOfMemory" in name or "out of memory" in str(exc).lower():
        return f"out of memory: {exc}"
    if name == "NonFiniteLoss":
        return f"NaN loss: {exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{name}: {exc}{where}"


def crash_reason(proc: mp.process.BaseProcess) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"worker crashed: killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"worker crashed (exit code {code})"


def stop_worker(proc: mp.process.BaseProcess) -> None:
    """End a worker and every process its trials started: its process group, and the ones that
    left it (``setsid``) but stayed below it (the worker is their subreaper)."""
    below = descendants(proc.pid) if proc.pid is not None else []
    if proc.is_alive():
        proc.terminate()
        proc.join(2)
    if proc.is_alive():
        proc.kill()
        proc.join(2)
    if proc.pid is not None:
        with contextlib.suppress(OSError):  # no such group: nothing was left running
            os.killpg(proc.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
