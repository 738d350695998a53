"""The N workers' slots: GPUs per trial, CPU threads, and requests the machine cannot meet."""

from __future__ import annotations

import pytest

from asap.tools.trials.resources import ResourceError, Slot, plan_slots


def test_one_worker_per_gpu_or_several_gpus_per_trial():
    assert [s.gpus for s in plan_slots(4, gpus=4)] == [(0,), (1,), (2,), (3,)]
    assert [s.gpus for s in plan_slots(2, 2, gpus=4)] == [(0, 1), (2, 3)]
    assert [s.gpus for s in plan_slots(4, 0.5, gpus=2)] == [(0,), (1,), (0,), (1,)]


def test_on_a_cpu_host_the_workers_split_the_cores():
    assert plan_slots(1, gpus=0, cores=16) == [Slot(0)]  # one worker: torch's own default
    assert [s.threads for s in plan_slots(2, gpus=0, cores=16)] == [8, 8]
    assert [s.threads for s in plan_slots(4, gpus=0, cores=2)] == [1, 1, 1, 1]
    assert plan_slots(2, gpus=0, cores=16)[1].describe() == "8 CPU threads"


@pytest.mark.parametrize(("workers", "per", "gpus", "message"), [
    (0, None, 0, "--workers must be at least 1, got 0"),
    (1, 1, 0, "asks for GPUs, and this machine has none"),
    (3, 1, 2, "3 workers x 1 GPU(s) per trial need 3 GPUs; this machine has 2"),
    (5, 0.5, 2, "5 workers at 0.5 GPU per trial need 3 GPUs; this machine has 2"),
    (1, 1.5, 4, "above 1 it must be a whole number"),
])
def test_requests_the_machine_cannot_meet_say_what_it_has(workers, per, gpus, message):
    with pytest.raises(ResourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_slots(workers, per, gpus=gpus)


def test_a_slot_names_its_gpus_as_the_tuner_sees_them(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert Slot(1, gpus=(2, 3)).env() == {"CUDA_VISIBLE_DEVICES": "2,3"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # the tuner itself was given three
    assert Slot(1, gpus=(1, 2)).env() == {"CUDA_VISIBLE_DEVICES": "6,7"}
    assert Slot(0, threads=2).env() == {}


def test_a_trial_takes_the_cores_other_processes_leave_free(tmp_path, monkeypatch):
    """Twelve runnable tasks on two cores: one thread (two spun at every parallel region for a
    thread the scheduler had not run, 0.6 s became 28 s); an idle machine: every core."""
    from asap.tools.trials import resources
    monkeypatch.setattr(resources, "usable_cores", lambda: 2)
    busy, idle, odd = tmp_path / "busy", tmp_path / "idle", tmp_path / "odd"
    busy.write_text("11.9 8.0 4.1 13/412 9999\n")
    idle.write_text("0.1 0.2 0.3 1/300 9999\n")
    odd.write_text("not a loadavg\n")
    assert resources.free_cores(str(busy)) == 1
    assert resources.free_cores(str(idle)) == 2
    assert resources.free_cores(str(odd)) == 2  # unreadable: the slot's share, as before
    assert resources.free_cores(str(tmp_path / "missing")) == 2


def test_the_tuners_pools_run_one_thread_while_trials_train_elsewhere(tmp_path):
    """A session whose trials run in workers holds its own BLAS pools (scipy's, which the
    prior uses, included) at one thread, and gives them back as they were (one whose objective
    runs in this process: tests/graphs/test_in_process.py)."""
    from threadpoolctl import threadpool_info

    import asap

    def threads():
        return {p["filepath"]: p["num_threads"] for p in threadpool_info()
                if p["user_api"] == "blas"}

    seen = {}

    def look(isolate):
        return lambda study, trial: seen.setdefault(isolate, threads())

    before = threads()
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    asap.optimize(quadratic, space, n_trials=2, llm=False, db=str(tmp_path / "w.db"),
                  show_progress_bar=False, callbacks=[look(True)])
    assert any("scipy" in path for path in seen[True])
    assert set(seen[True].values()) == {1}
    after = threads()
    assert {path: after[path] for path in before} == before  # given back as they were


def quadratic(config, report=None):
    return (config["x"] - 0.3) ** 2


def test_a_kept_worker_limits_its_pools_each_trial_and_sees_pools_loaded_since():
    """A kept worker applies each trial's thread share to every BLAS/OpenMP pool loaded, with the
    pools it found for the trial before unless a module was imported since (a new pool comes
    with one). Run in a fresh interpreter: the limits are process-wide."""
    import subprocess
    import sys

    script = """
import numpy
from threadpoolctl import threadpool_info
from asap.tools.trials import workers

def blas():
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

workers.limit_threads(1)
first = workers._pools()
assert blas() == {1}, blas()
workers.limit_threads(2)
assert workers._pools() is first  # nothing imported: the pools found before
assert blas() == {2}, blas()
import scipy.linalg  # scipy's own OpenBLAS: a pool the first look did not see
workers.limit_threads(1)
assert workers._pools() is not first
assert len(workers._pools().lib_controllers) > len(first.lib_controllers)
assert blas() == {1}, blas()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
