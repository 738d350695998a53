"""Workloads that ``train_on_gpu`` can run, by reference.

Built-ins: ``digits-mlp``, ``digits-cnn``, ``charlm``, ``hpobench:<dataset>``,
``nasbench201:<dataset>``. Anything else of the form ``package.module:function`` is a user
workload: ``function(config, report) -> dict[str, float]`` (it may also take ``fidelity``, and
``seed``: the trial's own seed), with
its search space from a YAML/JSON file. Note that a user workload runs the user's own code.

A workload that reports its own simulated duration can run on the virtual clock
(``--clock virtual``): it names the returned metric that holds a trial's simulated training
seconds (``duration: train_time`` in the space file; the tables do it with their ``train_time``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from asap.tools.hpo.space import Space, SpaceError
from asap.tools.yaml_file import load_yaml

BUILTIN = {
    "digits-mlp": ("asap.tools.workloads.digits:digits_mlp", "val_accuracy", "maximize", 20),
    "digits-cnn": ("asap.tools.workloads.digits:digits_cnn", "val_accuracy", "maximize", 15),
    "charlm": ("asap.tools.workloads.charlm:charlm", "val_loss", "minimize", 600),
}


TABLES = ("hpobench", "nasbench201")  # tabular benchmarks: a lookup, training time simulated


def is_tabular(ref: str) -> bool:
    """``hpobench:<dataset>`` or ``nasbench201:<dataset>``: a table lookup, not real training."""
    return ref.partition(":")[0] in TABLES and ":" in ref


class WorkloadError(ValueError):
    """A workload reference cannot be resolved (unknown name, bad import, missing space...)."""


@dataclass(frozen=True)
class Workload:
    """What the trainer needs: an importable target (or a module-level function, pickled by
    reference into the worker), its space and objective, fixed kwargs."""

    ref: str
    target: str | Callable[..., Any]
    space: Space
    metric: str
    direction: str
    default_fidelity: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    # What a person would train without tuning (a built-in's ``defaults:``): the chat pins the
    # parameters a person did not name to these.
    defaults: dict[str, Any] = field(default_factory=dict)
    # The configuration actually evaluated for a proposed one, when they differ (a table snaps
    # to its grid): stored in the trial's meta as ``evaluated`` and shown instead.
    evaluates: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # The returned metric holding a trial's simulated training seconds: what the virtual clock
    # charges for it. None: the workload trains for real and can only run on the real clock.
    duration: str | None = None


def resolve(ref: str, *, space_file: str | Path | None = None, metric: str | None = None,
            direction: str | None = None, time_scale: float = 0.0) -> Workload:
    """Turn a workload reference into a :class:`Workload`, or raise WorkloadError naming why."""
    if ref in BUILTIN:
        target, m, d, fid = BUILTIN[ref]
        spec = yaml.safe_load(resources.files("asap.tools.workloads").joinpath(f"{ref}.yaml")
                              .read_text())
        space = Space.from_file(space_file) if space_file is not None else Space.from_dict(spec)
        return Workload(ref, target, space, metric or m, direction or d, fid,
                        defaults=spec.get("defaults", {}))
    bench, _, dataset = ref.partition(":")
    if bench in TABLES:
        return _tabular(ref, bench, dataset, time_scale, space_file)
    if ":" in ref:
        return _user(ref, space_file, metric, direction)
    raise WorkloadError(f"unknown workload {ref!r}; use one of {sorted(BUILTIN)}, "
                        "hpobench:<dataset>, nasbench201:<dataset> or package.module:function")


def _tabular(ref: str, bench: str, dataset: str, time_scale: float,
             space_file: str | Path | None = None) -> Workload:
    from asap.tools.workloads import tabular

    names = tabular.BENCHES[bench].available_dataset_names
    if dataset not in names:
        raise WorkloadError(f"unknown {bench} dataset {dataset!r}; choose one of {names}")
    if time_scale < 0:
        raise WorkloadError(f"time_scale must be >= 0, got {time_scale}")
    space = Space.from_dict(tabular.space_dict(bench))
    if space_file is not None:  # a narrowed space (values are snapped to the table's grid)
        custom = Space.from_file(space_file)
        if sorted(custom.names) != sorted(space.names):
            raise WorkloadError(f"a {bench} space must have exactly the parameters "
                                f"{space.names}; {space_file} has {custom.names}")
        space = custom
    return Workload(ref, "asap.tools.workloads.tabular:lookup", space, "val_acc", "maximize",
                    None, {"bench": bench, "dataset": dataset, "time_scale": time_scale},
                    evaluates=functools.partial(tabular.snap, bench), duration="train_time")


def _user(ref: str, space_file: Any, metric: str | None, direction: str | None) -> Workload:
    from asap.tools.trials.define_by_run import takes_trial

    if takes_trial(load_target(ref)):  # fails early, in the caller, with a clear message
        raise WorkloadError(
            f"{ref} is an Optuna objective, objective(trial): run it from Python with "
            f"asap.optimize({ref.partition(':')[2]}, n_trials=N), which learns its space from "
            "its suggest calls; `asap tune` runs function(config, report) with --space FILE")
    if space_file is None:
        raise WorkloadError(f"workload {ref!r} needs a search space file (--space FILE)")
    space = Space.from_file(space_file)
    data = load_yaml(Path(space_file).read_text(), str(space_file))  # from_file vetted it
    meta = data if isinstance(data, dict) and "params" in data else {}
    metric = metric or meta.get("metric")
    direction = direction or meta.get("direction", "maximize")
    if not metric:
        raise WorkloadError(f"workload {ref!r}: name the metric: add a 'metric:' line to the space file")
    if not isinstance(metric, str) or any(unicodedata.category(c) == "Cc" for c in metric):
        raise WorkloadError(f"{space_file}: the metric is a name without control characters "
                            f"(newlines, tabs, escapes), got {metric!r}")
    if direction not in ("minimize", "maximize"):
        raise WorkloadError(f"direction must be minimize or maximize, got {direction!r}")
    duration = meta.get("duration")
    if duration is not None and (not isinstance(duration, str) or not duration):
        raise WorkloadError(f"{space_file}: 'duration' names the metric that holds a trial's "
                            f"simulated seconds (e.g. duration: train_time), got {duration!r}")
    return Workload(ref, ref, space, metric, direction, meta.get("fidelity"), duration=duration)


def load_target(target: str | Callable[..., Any]):
    """Import ``package.module:function`` (the current directory is importable, like
    ``python -m``); a callable (``asap.optimize``'s objective) is its own target."""
    if callable(target):
        return target
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise WorkloadError(f"workload {target!r} must look like package.module:function")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time error is the user's to see
        raise WorkloadError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise WorkloadError(f"module {module_name!r} has no function {func_name!r}")
    return fn


def call(fn, config: dict, report, fidelity: int | None, kwargs: dict, seed: int | None = None,
         number: int | None = None) -> Any:
    """Call a workload function, passing ``fidelity``, the trial's ``seed`` and its ``number``
    only to functions that accept them."""
    accepts = inspect.signature(fn).parameters
    for key, value in (("fidelity", fidelity), ("seed", seed), ("number", number)):
        if value is not None and key in accepts:
            kwargs = {**kwargs, key: value}
    return fn(config, report, **kwargs)


def check_clock(workload: Workload, clock: str) -> None:
    """Refuse ``--clock virtual`` for a workload that cannot say what a trial costs."""
    if clock == "virtual" and workload.duration is None:
        raise WorkloadError(
            f"--clock virtual needs each trial's simulated duration, and workload "
            f"{workload.ref!r} reports none: return it as a metric and name that metric in the "
            "space file (duration: train_time), as the hpobench:/nasbench201: tables do; real "
            "training runs on the real clock")


__all__ = ["Workload", "WorkloadError", "resolve", "load_target", "SpaceError", "BUILTIN",
           "is_tabular", "check_clock"]
