"""Imported by the trainer's fork server as it starts: imports the modules named in
``ASAP_PRELOAD_MODULES`` (the objective's module and what its trials imported; with torch, what
torch's optimizers import on first use); reads the tables named in
``ASAP_PRELOAD_TABLES`` (``bench:dataset``, comma-separated) once, so every trial's worker forks
with them in memory instead of reading them again; and imports the tuner's main script
(``ASAP_PRELOAD_MAIN``) as multiprocessing's ``__mp_main__`` when the objective needs it
(``ASAP_PRELOAD_MAIN_RUN``), or puts a stand-in there, since each worker would otherwise import
it itself (what Python 3.11's own ``"__main__"`` preload means to do but never receives the
path for)."""

from __future__ import annotations

import importlib
import multiprocessing.process
import multiprocessing.spawn
import os
import runpy
import sys
import types

from asap.tools.trials.workers import MAIN_ENV, MAIN_RUN_ENV, MODULES_ENV, PRELOAD_ENV
from asap.tools.workloads import tabular


class _ScriptOnDemand(types.ModuleType):
    """The main script's stand-in where the objective does not need it: multiprocessing takes it
    for the script already imported (its path), so no worker runs the script; a name looked up
    in it after all (a later session's objective from the script) runs the script then."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        self.__dict__.update(runpy.run_path(self.__file__, run_name="__mp_main__"))
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"the script {self.__file__} has no {name!r}") from None


_main = os.environ.get(MAIN_ENV)
if _main and not os.environ.get(MAIN_RUN_ENV):
    _stand_in = _ScriptOnDemand("__mp_main__")
    _stand_in.__file__ = _main
    sys.modules["__main__"] = sys.modules["__mp_main__"] = _stand_in
elif _main:
    # As CPython's forkserver does for its own "__main__" preload: marked as bootstrapping, a
    # script without an `if __name__ == "__main__":` guard cannot start a session in here.
    multiprocessing.process.current_process()._inheriting = True
    try:
        multiprocessing.spawn.import_main_path(_main)
    except BaseException:  # noqa: BLE001 - each worker imports it itself then, as before
        pass
    finally:
        del multiprocessing.process.current_process()._inheriting

for _ref in filter(None, os.environ.get(PRELOAD_ENV, "").split(",")):
    _bench, _, _dataset = _ref.partition(":")
    try:
        tabular._table(_bench, _dataset)
    except Exception:  # noqa: BLE001 - a worker reads it itself then, and reports what is wrong
        pass

for _module in filter(None, os.environ.get(MODULES_ENV, "").split(",")):
    try:
        importlib.import_module(_module)
    except BaseException:  # noqa: BLE001 - a worker imports it itself then, and reports errors
        pass

if "torch" in sys.modules:  # its optimizers import torch._dynamo (and sympy) on first use
    try:
        importlib.import_module("torch._dynamo")
    except BaseException:  # noqa: BLE001 - as above
        pass
