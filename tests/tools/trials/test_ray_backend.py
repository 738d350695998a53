"""Trials as Ray tasks on a local Ray instance (127.0.0.1, 2 CPUs): reports and pruning flow
back to the driver, which alone writes the ledger; a worker killed mid-trial is a failed trial
("worker lost") and the next trial runs."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from asap.tools.hpo.pruning import Pruner
from asap.tools.ledger.store import Ledger
from asap.tools.trials.ray_backend import (
    LOST,
    RayBackend,
    RayError,
    check_address,
    ray_cluster,
    ray_slots,
)
from asap.tools.trials.resources import ResourceError, Slot
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve

USERWL = Path(__file__).parents[2] / "userwl"
GUARD_S = 120


BEFORE_RAY: set[tuple[str, int]] = set()  # the machine's listening sockets before Ray started


@pytest.fixture(scope="module")
def ray():
    BEFORE_RAY.update(_listeners())
    with ray_cluster(None, num_cpus=2) as ray:
        yield ray


@pytest.fixture
def userwl(monkeypatch):
    monkeypatch.syspath_prepend(str(USERWL))
    monkeypatch.chdir(USERWL)  # Ray's workers import the objectives' modules from here
    return USERWL


def _trainer(tmp_path, name, ref, **kwargs):
    wl = resolve(ref, space_file=USERWL / "space.yaml")
    if "wl_kwargs" in kwargs:
        wl = dataclasses.replace(wl, kwargs=kwargs.pop("wl_kwargs"))
    study = Ledger(tmp_path / f"{name}.db").create_study(name, wl.space, metric="score",
                                                         direction="maximize")
    return study, Trainer(study, wl, backend=RayBackend(), **kwargs)


def test_a_ray_trial_reports_and_is_recorded_by_the_driver(ray, tmp_path, userwl):
    study, trainer = _trainer(tmp_path, "ok", "faulty:ok")
    trial = trainer.run({"x": 0.5}, tool="test")
    assert trial.status == "complete" and trial.value == 0.5
    assert trial.intermediate == {1: 0.5, 2: 1.0, 3: 1.5}  # every report reached the ledger
    bad = _trainer(tmp_path, "bad", "faulty:raises")[1].run({"x": 0.5}, tool="test")
    assert bad.status == "failed" and bad.error.startswith("ValueError: bad hyperparameters")


def test_the_driver_prunes_a_ray_trial_from_its_reports(ray, tmp_path, userwl):
    study, trainer = _trainer(tmp_path, "pr", "faulty:ok")
    for x in (0.6, 0.7, 0.8, 0.9):  # four good trials with per-step values
        assert trainer.run({"x": x}, tool="test").status == "complete"
    slow = Trainer(study, dataclasses.replace(trainer.workload, target="faulty:slow_bad"),
                   pruner=Pruner(study, "median"), backend=trainer.backend)
    trial = slow.run({"x": 0.1}, tool="test")
    assert trial.status == "pruned" and max(trial.intermediate) < 29  # stopped early


def test_a_killed_ray_worker_is_a_failed_trial_and_the_next_one_runs(ray, tmp_path, userwl):
    pidfile = tmp_path / "pid"
    study, trainer = _trainer(tmp_path, "kill", "faulty:pid_then_hangs_after_report",
                              wl_kwargs={"pidfile": str(pidfile)})
    job = trainer.start({"x": 0.5}, tool="test")
    deadline = time.monotonic() + GUARD_S
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline, "the Ray trial never started"
        time.sleep(0.05)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    trial = job.wait(GUARD_S)
    assert trial.status == "failed" and trial.error.startswith(LOST), trial.error
    assert trial.intermediate == {1: 0.5}  # what it reported before it died is kept
    ok = dataclasses.replace(trainer.workload, target="faulty:ok", kwargs={})
    assert Trainer(study, ok, backend=RayBackend()).run({"x": 0.3}, tool="test").status == "complete"


def test_a_ray_trial_counts_from_when_its_objective_began(ray, tmp_path, userwl):
    """Three trials on the instance's two CPUs: one waits in Ray's queue until another ends.
    A trial's duration is its objective's own time, as the task measured it, not that wait
    (the cost model would read it as the configuration's cost): no trial's recorded start is
    before its objective's first line, and each lasts its hold."""
    study, trainer = _trainer(tmp_path, "queue", "parallel:stamped", wl_kwargs={"hold_s": 1.0},
                              slots=[Slot(i) for i in range(3)])
    jobs = [trainer.start({"x": x}, tool="test") for x in (0.1, 0.2, 0.3)]
    trials = [job.wait(GUARD_S) for job in jobs]
    assert [t.status for t in trials] == ["complete"] * 3
    began = sorted(t.metrics["began"] for t in trials)
    assert began[2] - began[0] >= 1.0  # one of them did wait for a CPU
    for t in trials:
        assert t.started_at >= t.metrics["began"] - 0.25, (t.started_at, t.metrics["began"])
        assert 1.0 <= t.duration == t.ended_at - t.started_at


def test_ray_requests_the_cluster_cannot_meet(ray):
    with pytest.raises(ResourceError, match="asks for GPUs, and the Ray cluster has none"):
        ray_slots(ray, 2, 1.0)
    assert len(ray_slots(ray, 2, None)) == 2 and len(ray_slots(ray, None, None)) == 1
    with pytest.raises(RayError, match="the Ray cluster at 127.0.0.1:1 does not answer"):
        check_address("127.0.0.1:1")
    with pytest.raises(RayError, match="is not HOST:PORT"):
        check_address("nowhere")


def test_a_failed_join_says_how_to_send_rays_token(monkeypatch):
    """Joining a named cluster sends Ray's token only with RAY_AUTH_MODE=token (Ray's rule for
    an explicit address), so a failed join says so until that is set; a local instance never."""
    from asap.tools.trials.ray_backend import _auth_hint

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert "set RAY_AUTH_MODE=token" in _auth_hint("127.0.0.1:6379")
    assert _auth_hint(None) == "" and _auth_hint("local") == ""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert _auth_hint("127.0.0.1:6379") == ""


def test_a_session_on_ray_keeps_two_trials_in_flight(ray, tmp_path, userwl):
    from fakes import ScriptedModel
    from langchain_core.messages import AIMessage

    from asap.agent.config import TuneConfig
    from asap.graphs.session import tune
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    wl = dataclasses.replace(resolve("parallel:rendezvous", space_file=userwl / "space.yaml"),
                             kwargs={"barrier": str(barrier)})
    cfg = TuneConfig(workload="parallel:rendezvous", space=str(userwl / "space.yaml"),
                     trials=4, workers=2, backend="ray", db=str(tmp_path / "s.db"), study="s",
                     decide="json", speculation="off")
    summary = tune(cfg, llm=ScriptedModel(lambda m, k: AIMessage(content='"A"')), workload=wl)
    trials = Ledger(tmp_path / "s.db").open_study("s").trials()
    # The first two met on the barrier: two Ray tasks ran at once.
    assert summary["complete"] == 4, [t.error for t in trials]
    assert {t.meta["worker"] for t in trials} == {0, 1}


def _listeners() -> set[tuple[str, int]]:
    """Listening TCP sockets on this machine: (address as /proc writes it, port)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                address, port = local.split(":")
                out.add((address, int(port, 16)))
    return out


def test_a_local_ray_instance_listens_on_loopback_only(ray):
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    new = _listeners() - BEFORE_RAY  # the GCS, raylet, workers... of the instance
    assert new and all(address in loopback for address, _ in new), new
