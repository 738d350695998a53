"""The fork server every trial's worker starts from, and what it holds.

Why a fork server with preloads: a fresh process per trial keeps trials isolated (a crash, an
out-of-memory or a timeout takes only that trial), and forking from a server that already
imported torch, the trainer, the tuner's main script and a table workload's table makes that
process start in ~20 ms (each worker importing and reading them itself took 2.9 s a trial).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.forkserver
import multiprocessing.spawn
import multiprocessing.util
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from asap.tools.study import process_alive
from asap.tools.workloads import Workload

PRELOAD_ENV = "ASAP_PRELOAD_TABLES"  # read by asap.tools.workloads.preload in the fork server
MAIN_ENV = "ASAP_PRELOAD_MAIN"
_server_lock = threading.Lock()
_server_started = False


def fork_server(tables: tuple[str, ...] = ()) -> mp.context.BaseContext:
    """The forkserver context, its server started on the first trial rather than at import
    (once per process: later calls return the running one).

    Importing torch once in the fork server makes each trial's worker start in milliseconds; a
    table workload's tables are read there too (``tables``: ``bench:dataset`` refs), which cost
    every worker 2-3 s of CPU when each read its own (measured on hpobench:australian), time
    that also slowed a speculative LLM call running beside it.
    """
    global _server_started
    ctx = mp.get_context("forkserver")
    with _server_lock:
        if not _server_started:
            _own_temp_dir()
            # The trainer too: a worker unpickles its _worker, and its imports (the ledger's
            # sqlite-utils...) cost each worker ~0.35 s of CPU otherwise.
            ctx.set_forkserver_preload(["torch", "asap.tools.workloads.common",
                                        "asap.tools.trainer", "asap.tools.workloads.preload"])
            # And the main script (the `asap` command imports rich, openai, langchain), which
            # multiprocessing re-imports in every worker unless the server has it (~1.5 s a
            # trial); Python 3.11's "__main__" preload never receives its path, so we pass it.
            main = mp.spawn.get_preparation_data("asap").get("init_main_from_path")
            with _env({PRELOAD_ENV: ",".join(tables), MAIN_ENV: main or ""}):
                multiprocessing.forkserver.ensure_running()
            _server_started = True
    return ctx


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
    """Give multiprocessing a temp folder named by this process, and remove the folders of
    processes that are gone.

    Why: the fork server's socket lives in a ``pymp-*`` folder that only a normal exit removes;
    SIGKILLed sessions left one behind each. Named ``asap-mp-<pid>``, a later session can tell
    which are leftovers.
    """
    base = Path(tempfile.gettempdir())
    for old in base.glob("asap-mp-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    process = mp.current_process()
    if process._config.get("tempdir") is None:  # what multiprocessing.util.get_temp_dir reads
        mine = base / f"asap-mp-{os.getpid()}"
        mine.mkdir(exist_ok=True)
        process._config["tempdir"] = str(mine)
        mp.util.Finalize(None, shutil.rmtree, args=(str(mine), True), exitpriority=-100)


def tables_of(workload: Workload) -> tuple[str, ...]:
    """The table a table workload looks up, for the fork server to read once."""
    kw = workload.kwargs
    return (f"{kw['bench']}:{kw['dataset']}",) if "bench" in kw and "dataset" in kw else ()
