"""train_on_gpu's engine with real worker processes, real torch and the real tables."""

import time
from pathlib import Path

import pytest

from asap.tools.hpo.pruning import Pruner
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import WorkloadError, resolve

HERE = Path(__file__).parents[2] / "userwl"


@pytest.fixture
def user(ledger, monkeypatch):
    monkeypatch.chdir(HERE)

    def make(fn: str, **kw):
        wl = resolve(f"faulty:{fn}", space_file=HERE / "space.yaml")
        study = ledger.create_study(fn, wl.space, metric=wl.metric, direction=wl.direction)
        return study, Trainer(study, wl, **kw)
    return make


def test_digits_mlp_trains_for_real_and_beats_chance(ledger):
    wl = resolve("digits-mlp")
    study = ledger.create_study("d", wl.space, metric=wl.metric, direction=wl.direction)
    cfg = {"lr": 0.003, "weight_decay": 1e-4, "width": 64, "depth": 2, "dropout": 0.1,
           "batch_size": 32, "optimizer": "adam", "beta1": 0.9}
    trial = Trainer(study, wl).run(cfg, tool="llm", fidelity=4)
    assert trial.status == "complete", trial.error
    assert trial.value > 0.5  # chance is 0.1 on ten classes
    assert sorted(trial.intermediate) == [1, 2, 3, 4]
    assert study.timings("train")[0]["duration"] > 0


@pytest.mark.parametrize("fn, reason", [
    ("raises", "ValueError: bad hyperparameters"),
    ("nan_loss", "is nan"),
    ("oom", "out of memory"),
    ("segfault", "worker crashed: killed by SIGABRT"),
    ("non_numeric", "metric 'score' is not a number"),
    ("missing_metric", "returned no 'score' metric"),
])
def test_failures_become_failed_trials_with_reasons(user, fn, reason):
    study, trainer = user(fn)
    trial = trainer.run({"x": 0.5}, tool="llm")
    assert trial.status == "failed"
    assert reason in trial.error
    ok_study, ok_trainer = user("ok")
    assert ok_trainer.run({"x": 0.5}, tool="llm").status == "complete"  # the study goes on


def test_timeout_kills_the_worker(user):
    study, trainer = user("hangs", time_limit_s=2)
    t0 = time.time()
    job = trainer.start({"x": 0.5}, tool="llm")
    assert not job.done()  # the caller is free while it trains
    trial = job.wait(30)
    assert trial.status == "failed" and "timeout" in trial.error
    assert time.time() - t0 < 15


def test_cancel(user):
    study, trainer = user("hangs")
    job = trainer.start({"x": 0.5}, tool="llm")
    time.sleep(0.5)
    job.cancel()
    assert job.wait(15).error == "cancelled"


def test_cancel_all_records_every_job_in_flight(user):
    study, trainer = user("hangs")
    jobs = [trainer.start({"x": x}, tool="llm") for x in (0.2, 0.4)]
    trainer.cancel_all("stop now", wait_s=15)
    assert [j.wait(0).error for j in jobs] == ["stop now", "stop now"]
    assert study.trials(status="running") == []


def test_ctrl_c_closes_a_row_that_has_no_job_yet(user):
    """The signal can land between the trial's row and its worker: nothing stays 'running'."""
    from types import SimpleNamespace

    from asap.graphs.session import _cancel_on_signals
    study, trainer = user("hangs")
    job = trainer.start({"x": 0.1}, tool="llm")
    orphan = study.start_trial({"x": 0.3}, tool="llm")
    with pytest.raises(KeyboardInterrupt), _cancel_on_signals(SimpleNamespace(study=study, trainer=trainer)):
        raise KeyboardInterrupt
    assert "Ctrl-C" in job.wait(0).error
    assert study.trial(orphan).status == "failed" and "Ctrl-C" in study.trial(orphan).error


def test_user_workload_reports_and_fidelity(user):
    study, trainer = user("ok")
    trial = trainer.run({"x": 0.5}, tool="llm")
    assert trial.intermediate == {1: 0.5, 2: 1.0, 3: 1.5} and trial.value == 0.5
    study2, trainer2 = user("with_fidelity")
    assert trainer2.run({"x": 0.1}, tool="llm", fidelity=7).value == 7.0


def test_median_pruner_stops_a_bad_trial(user):
    study, trainer = user("slow_bad")
    for x in (0.9, 0.8, 0.7, 0.6):
        tid = study.start_trial({"x": x}, tool="seed")
        for step in range(1, 30):
            study.report(tid, step, x)
        study.finish_trial(tid, status="complete", metrics={"score": x})
    trainer.pruner = Pruner(study, "median")
    trial = trainer.run({"x": 0.1}, tool="llm")
    assert trial.status == "pruned"
    assert max(trial.intermediate) < 29


def test_hpobench_lookup_with_simulated_clock(ledger):
    wl = resolve("hpobench:australian", time_scale=0.01)
    study = ledger.create_study("h", wl.space, metric=wl.metric, direction=wl.direction)
    cfg = {"alpha": 1e-8, "batch_size": 4, "depth": 1, "learning_rate_init": 1e-5, "width": 16}
    trial = Trainer(study, wl).run(cfg, tool="llm")
    assert trial.status == "complete" and 0.5 < trial.value < 1.0
    assert trial.duration >= 0.01 * trial.metrics["train_time"]


def test_nasbench201_and_charlm(ledger):
    wl = resolve("nasbench201:cifar10")
    study = ledger.create_study("n", wl.space, metric=wl.metric, direction=wl.direction)
    trial = Trainer(study, wl).run({f"Op{i}": "nor_conv_3x3" for i in range(6)}, tool="llm")
    assert trial.status == "complete" and trial.value > 50  # percent accuracy
    lm = resolve("charlm")
    study = ledger.create_study("c", lm.space, metric=lm.metric, direction=lm.direction)
    cfg = {"lr": 3e-3, "warmup": 10, "width": 64, "layers": 1, "heads": 2, "dropout": 0.0}
    trial = Trainer(study, lm).run(cfg, tool="llm", fidelity=100)
    assert trial.status == "complete" and trial.intermediate[50] > trial.intermediate[100]


@pytest.mark.parametrize("ref, kw, message", [
    ("nope", {}, "unknown workload 'nope'"),
    ("hpobench:mars", {}, "unknown hpobench dataset 'mars'"),
    ("no_such_module_xyz:fn", {}, "cannot import module 'no_such_module_xyz'"),
    ("faulty:absent", {"space_file": HERE / "space.yaml"}, "has no function 'absent'"),
    ("faulty:ok", {}, "needs a search space file"),
])
def test_bad_workload_refs(monkeypatch, ref, kw, message):
    monkeypatch.chdir(HERE)
    with pytest.raises(WorkloadError, match=message):
        resolve(ref, **kw)


def test_device_prefers_cuda_when_present(monkeypatch):
    import torch

    from asap.tools.workloads.common import device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device().type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device().type == "cuda"


def test_each_trial_draws_its_own_seed_from_a_table(ledger):
    """The table holds several training seeds per grid point: trial n of a session seeded s
    sees draw trial_seed(s, n), so repeats of a config see different draws, sessions with the
    same seed the same ones."""
    from asap.tools.trials.job import trial_seed
    from asap.tools.workloads import tabular
    wl = resolve("hpobench:australian")
    cfg = {"alpha": 1e-4, "batch_size": 32, "depth": 2, "learning_rate_init": 1e-3, "width": 128}
    values = []
    for seed in (0, 0, 1):
        study = ledger.create_study(f"s{len(values)}", wl.space, metric=wl.metric,
                                    direction=wl.direction)
        trainer = Trainer(study, wl, seed=seed)
        values.append([trainer.run(cfg, tool="llm").value for _ in range(6)])
    assert values[0] == values[1] and values[0] != values[2]  # by seed, reproducibly
    assert len(set(values[0])) > 1  # a fresh draw per trial
    expected = [tabular.lookup(cfg, lambda s, v: False, "hpobench", "australian",
                               seed=trial_seed(0, n))["val_acc"] for n in range(6)]
    assert values[0] == expected


def test_in_process_trials_record_the_same_as_workers(ledger):
    """A table lookup run in-process (the eval's grids) lands in the ledger like a worker's."""
    wl = resolve("hpobench:australian")
    cfg = {"alpha": 1e-4, "batch_size": 32, "depth": 2, "learning_rate_init": 1e-3, "width": 128}
    runs = []
    for name, here in (("w", False), ("i", True)):
        study = ledger.create_study(name, wl.space, metric=wl.metric, direction=wl.direction)
        trial = Trainer(study, wl, seed=4, in_process=here).run(cfg, tool="t")
        runs.append((trial.status, trial.value, trial.intermediate, len(study.timings("train"))))
    assert runs[0] == runs[1] and runs[0][0] == "complete"


def test_an_in_process_failure_is_a_failed_trial(user):
    study, _ = user("raises")
    wl = resolve("faulty:raises", space_file=HERE / "space.yaml")
    trial = Trainer(study, wl, in_process=True).run({"x": 0.5}, tool="llm")
    assert trial.status == "failed" and "ValueError: bad hyperparameters" in trial.error


@pytest.mark.parametrize("isolate", [True, False])
def test_numpy_and_torch_numbers_are_numbers(user, isolate):
    for fn in ("numpy_numbers", "torch_scalar"):
        study, trainer = user(fn, in_process=not isolate)
        t = trainer.run({"x": 0.25}, tool="t")
        assert t.status == "complete" and t.value == 0.25, (fn, t.error)
    assert t.metrics == {"score": 0.25} and study.best().value == 0.25


def test_a_number_too_large_fails_its_trial_and_the_session_goes_on(user):
    study, trainer = user("huge_int")
    t = trainer.run({"x": 0.5}, tool="t")
    assert t.status == "failed" and "'score' is too large for a number" in t.error


def test_a_non_finite_side_metric_is_stored_as_valid_json(user, capsys):
    import json

    from asap.cli.main import main
    study, trainer = user("nan_aside")
    t = trainer.run({"x": 0.5}, tool="t")
    assert t.status == "complete" and t.metrics == {"score": 0.5, "aside": None}
    raw = study.db.execute("SELECT metrics FROM trials").fetchone()[0]

    def refuse(name):
        raise ValueError(name)
    json.loads(raw, parse_constant=refuse)  # strict JSON: no NaN
    assert main(["show", study.name, "--db", str(study.ledger.path), "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=refuse)


@pytest.mark.parametrize("fn, reason", [("exits", "SystemExit: 3"),
                                        ("interrupts", "KeyboardInterrupt")])
def test_an_in_process_workload_that_exits_is_a_failed_trial_not_a_hang(user, fn, reason):
    study, trainer = user(fn, in_process=True)
    t = trainer.run({"x": 0.5}, tool="t")
    assert t.status == "failed" and t.error.startswith(reason)
    assert trainer.run({"x": 0.25}, tool="t").status == "failed"  # and the next one runs


@pytest.mark.parametrize("in_process", [False, True])
def test_an_error_inside_the_supervisor_is_recorded_not_a_hang(user, monkeypatch, in_process):
    """Any exception in a trial's supervisor (here its judge) records the trial as failed with
    the reason, frees its worker and tells the waiter."""
    study, trainer = user("ok", in_process=in_process)

    def broken(metrics, pruned):
        raise RuntimeError("the supervisor broke")
    monkeypatch.setattr(trainer, "_judge", broken)
    t = trainer.run({"x": 0.5}, tool="t")
    assert t.status == "failed" and "RuntimeError: the supervisor broke" in t.error
    assert trainer._busy == set()


def test_processes_a_workload_starts_end_with_its_trial(ledger, tmp_path, monkeypatch):
    import dataclasses
    monkeypatch.chdir(HERE)
    pidfile = tmp_path / "child.pid"
    wl = resolve("faulty:spawns_then_hangs", space_file=HERE / "space.yaml")
    wl = dataclasses.replace(wl, kwargs={"pidfile": str(pidfile)})
    study = ledger.create_study("spawn", wl.space, metric=wl.metric, direction=wl.direction)
    trainer = Trainer(study, wl, time_limit_s=3.0)
    t = trainer.run({"x": 0.5}, tool="t")
    assert t.status == "failed" and "timeout" in t.error
    child = int(pidfile.read_text())
    state = Path(f"/proc/{child}/stat")

    def gone() -> bool:  # a zombie until its parent reaps it counts as gone
        try:
            return state.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    # Killed with its group when the trial ended; a SIGKILL lands asynchronously, so wait for
    # that event (the guard only bounds a failure: the sleep itself would run for 120 s).
    guard = time.monotonic() + 60
    while not gone():
        assert time.monotonic() < guard, "the workload's own process outlived its trial"
        time.sleep(0.05)


def test_an_objective_that_raises_trial_pruned_is_pruned_in_its_worker(user):
    """Optuna's ``raise optuna.TrialPruned()`` in a worker process: a pruned trial, not a
    failed one, with the reports it made."""
    study, trainer = user("prunes_itself")
    trial = trainer.run({"x": 0.25}, tool="test")
    assert trial.status == "pruned" and trial.error is None
    assert trial.intermediate == {1: 0.25}


def test_a_worker_runs_its_slots_next_trial_and_a_stopped_one_is_replaced(user):
    """Kept workers (``reuse_workers``, the default): a trial that ended by itself leaves its
    worker for the next trial, each trial's output still in its own log; one stopped at its
    time limit takes its worker with it; the trainer's close ends the kept one."""
    from asap.tools.trials.processes import process_alive

    study, trainer = user("pid_or_hang", time_limit_s=3.0)
    first, second = (trainer.run({"x": x}, tool="t") for x in (0.1, 0.2))
    assert first.metrics["pid"] == second.metrics["pid"]
    logs = [Path(study.trial(t.id).meta["log"]).read_text() for t in (first, second)]
    assert logs == ["trial with x=0.1\n", "trial with x=0.2\n"]
    assert "timeout" in trainer.run({"x": 0.95}, tool="t").error
    third = trainer.run({"x": 0.3}, tool="t")
    assert third.status == "complete" and third.metrics["pid"] != first.metrics["pid"]
    assert not process_alive(int(first.metrics["pid"]))
    trainer.close()
    guard = time.monotonic() + 60  # a SIGKILL lands asynchronously: wait for that event
    while process_alive(int(third.metrics["pid"])):
        assert time.monotonic() < guard, "a kept worker outlived its trainer"
        time.sleep(0.05)


def test_without_reuse_every_trial_gets_a_fresh_worker(user):
    from asap.tools.trials.backend import ForkServerBackend

    study, trainer = user("pid_or_hang", backend=ForkServerBackend(reuse=False))
    pids = {trainer.run({"x": x}, tool="t").metrics["pid"] for x in (0.1, 0.2, 0.3)}
    assert len(pids) == 3


def test_a_setsid_daemon_a_trial_leaves_ends_with_its_worker(ledger, tmp_path, monkeypatch):
    """Issue 37 (15): ``setsid`` takes a process out of the worker's group, and its shell's
    exit out of its parentage; the worker adopts it (a subreaper), so closing the trainer
    (its kept worker stopped) ends it too."""
    import dataclasses

    from asap.tools.trials.processes import process_alive
    monkeypatch.chdir(HERE)
    pidfile = tmp_path / "daemon.pid"
    wl = resolve("faulty:leaves_a_daemon", space_file=HERE / "space.yaml")
    wl = dataclasses.replace(wl, kwargs={"pidfile": str(pidfile)})
    study = ledger.create_study("daemon", wl.space, metric=wl.metric, direction=wl.direction)
    trainer = Trainer(study, wl)
    assert trainer.run({"x": 0.5}, tool="t").status == "complete"
    daemon = int(pidfile.read_text())
    assert process_alive(daemon)
    trainer.close()
    guard = time.monotonic() + 60  # a SIGKILL lands asynchronously: wait for that event
    while process_alive(daemon):
        assert time.monotonic() < guard, "the trial's daemon outlived its worker"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["sha", "hyperband"])
def test_sha_and_hyperband_stop_a_trial_at_chance_at_its_first_rung(ledger, monkeypatch, kind):
    monkeypatch.chdir(HERE)
    wl = resolve("curves:epochs", space_file=HERE / "space.yaml")
    study = ledger.create_study(kind, wl.space, metric=wl.metric, direction=wl.direction)
    trainer = Trainer(study, wl, pruner=Pruner(study, kind))
    try:
        good = [trainer.run({"x": 0.8 + i / 50}, tool="seed") for i in range(6)]  # each best
        chance = [trainer.run({"x": 0.1 + i / 100}, tool="seed") for i in range(8)]
    finally:
        trainer.close()
    assert [t.status for t in good] == ["complete"] * 6
    pruned = [t for t in chance if t.status == "pruned"]
    if kind == "sha":  # one rung for everyone: each is compared with the good ones at epoch 1
        assert len(pruned) == 8 and all(max(t.intermediate) == 1 for t in pruned)
    else:  # three brackets (first rungs at epochs 1, 3, 9): a bracket's first trial runs on
        assert len(pruned) >= 6 and all(max(t.intermediate) <= 9 for t in pruned)


def test_the_pruner_replays_an_earlier_sessions_trials(ledger):
    wl_space = resolve("curves:epochs", space_file=HERE / "space.yaml").space
    study = ledger.create_study("resumed", wl_space, metric="score", direction="maximize")
    for x in (0.9, 0.8):  # an earlier session's trials, with their curves
        tid = study.start_trial({"x": x}, tool="seed")
        for step in range(1, 16):
            study.report(tid, step, x)
        study.finish_trial(tid, status="complete", metrics={"score": x})
    report = Pruner(study, "sha").for_trial()
    assert report(1, 0.1)  # below both at the first rung: the rungs were rebuilt
    assert not Pruner(study, "sha").for_trial()(1, 0.95)


def _gated(ledger, tmp_path, monkeypatch, **kw):
    monkeypatch.chdir(HERE)
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("ASAP_TEST_BARRIER", str(tmp_path))
    wl = resolve("parallel:gated", space_file=HERE / "space.yaml")
    study = ledger.create_study("gated", wl.space, metric=wl.metric, direction=wl.direction)
    return study, Trainer(study, wl, in_process=True, **kw)


def _await_file(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def test_a_held_trial_lands_when_released_in_the_callers_order(ledger, tmp_path, monkeypatch):
    """The later trial ends first; held, it lands only after the earlier one, once released,
    with the time it ended, not the time it was released."""
    import queue
    study, trainer = _gated(ledger, tmp_path, monkeypatch)
    landed = queue.SimpleQueue()
    slow = trainer.start({"x": 0.1}, tool="t", landed=landed, hold=True)
    quick = trainer.start({"x": 0.9}, tool="t", landed=landed, hold=True)
    _await_file(tmp_path / "ran")  # the quick one's objective has returned
    assert not quick.done() and study.trial(quick.trial_id).status == "running"
    (tmp_path / "go").touch()
    slow.release()
    assert landed.get(timeout=60) == slow.trial_id  # the quick one is still held
    released_at = time.time()
    quick.release()
    assert landed.get(timeout=60) == quick.trial_id
    assert quick.wait(0).status == slow.wait(0).status == "complete"
    assert quick.wait(0).ended_at <= released_at


def test_a_cancel_lands_a_held_trial(ledger, tmp_path, monkeypatch):
    study, trainer = _gated(ledger, tmp_path, monkeypatch)
    job = trainer.start({"x": 0.9}, tool="t", hold=True)
    _await_file(tmp_path / "ran")
    trainer.cancel.cancel("stop now")
    assert job.wait(60).status == "complete"  # its result was in: it is kept
    assert study.trials(status="running") == []


def test_a_worker_seeds_the_global_generators_from_the_trials_seed(ledger, monkeypatch):
    """Unseeded draws in an objective are the trial's, not the worker's history: the same in a
    fresh worker and in a kept one that ran other trials first."""
    import random

    import numpy as np

    from asap.tools.trials.job import trial_seed

    monkeypatch.chdir(HERE)
    wl = resolve("parallel:draws", space_file=HERE / "space.yaml")
    kept = ledger.create_study("kept", wl.space, metric=wl.metric, direction=wl.direction)
    trainer = Trainer(kept, wl, seed=5)
    first = [trainer.run({"x": x}, tool="t") for x in (0.1, 0.2, 0.3)]
    fresh = ledger.create_study("fresh", wl.space, metric=wl.metric, direction=wl.direction)
    again = Trainer(fresh, wl, seed=5).run({"x": 0.9}, tool="t")
    seed = trial_seed(5, 0)
    assert again.value == first[0].value == np.random.RandomState(seed).rand()
    assert again.metrics["py"] == random.Random(seed).random()
    assert first[1].value == np.random.RandomState(trial_seed(5, 1)).rand()


def test_a_held_trials_worker_runs_the_next_trial_and_is_freed_once(ledger, tmp_path,
                                                                    monkeypatch):
    """Two workers: a held trial frees its worker when its result is in, a start waiting for a
    worker takes it, and the held trial landing later does not free that worker again."""
    import queue

    import pytest

    from asap.tools.trials.resources import Slot
    study, trainer = _gated(ledger, tmp_path, monkeypatch, slots=[Slot(0), Slot(1)])
    landed = queue.SimpleQueue()
    slow = trainer.start({"x": 0.1}, tool="t", landed=landed, hold=True)  # until "go"
    quick = trainer.start({"x": 0.9}, tool="t", landed=landed, hold=True)
    _await_file(tmp_path / "ran")
    nxt = trainer.start({"x": 0.2}, tool="t", landed=landed, hold=True, wait=True)
    assert nxt.slot.index == quick.slot.index != slow.slot.index
    quick.release()
    assert landed.get(timeout=60) == quick.trial_id
    with pytest.raises(RuntimeError, match="all 2 workers are busy"):
        trainer.start({"x": 0.3}, tool="t")
    (tmp_path / "go").touch()
    for job in (slow, nxt):
        job.release()
        assert job.wait(60).status == "complete"
