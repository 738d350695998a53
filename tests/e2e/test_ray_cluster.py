"""A two-node Ray cluster on this machine (both nodes on 127.0.0.1, one CPU each: see
ray_two_nodes.py) runs `asap tune --backend ray --workers 2`; a trial's worker is SIGKILLed
mid-run: that trial is failed "worker lost" and the session finishes its budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import FakeOpenAI

from asap.tools.ledger.store import Ledger

USERWL = Path(__file__).parents[1] / "userwl"
GUARD_S = 300


@pytest.mark.e2e
def test_a_two_node_ray_cluster_loses_a_worker_and_the_session_goes_on(tmp_path):
    pidfile = tmp_path / "hung.pid"
    env = {**os.environ, "ASAP_TEST_PIDFILE": str(pidfile), "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = subprocess.Popen([sys.executable, str(Path(__file__).parent / "ray_two_nodes.py")],
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    server = FakeOpenAI().start()
    try:
        address = cluster.stdout.readline().strip()  # printed once both nodes are up
        assert address.startswith("127.0.0.1:"), "the cluster did not come up"
        deadline = time.monotonic() + GUARD_S
        db = tmp_path / "r.db"
        cmd = [sys.executable, "-m", "asap.cli", "tune", "faulty:hang_once", "--space",
               str(USERWL / "space.yaml"), "--trials", "5", "--db", str(db), "--study", "r",
               "--base-url", server.base_url, "--model", "fake", "--decide", "json",
               "--backend", "ray", "--ray-address", address, "--workers", "2"]
        proc = subprocess.Popen(cmd, cwd=USERWL, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        while not (pidfile.exists() and pidfile.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        pid, hung_node = pidfile.read_text().split()
        os.kill(int(pid), signal.SIGKILL)  # the hung trial's Ray worker dies mid-run
        out, err = proc.communicate(timeout=GUARD_S)
        assert proc.returncode == 0, err[-2000:]
        assert f"Ray: 2 trial(s) at a time on {address} (2 CPUs, 0 GPUs)" in err
        trials = Ledger(db).open_study("r").trials()
        lost = [t for t in trials if t.status == "failed"]
        assert len(trials) == 5 and len(lost) == 1 and lost[0].error.startswith("worker lost")
        assert all(t.status == "complete" for t in trials if t not in lost)
        # Both nodes ran trials: one CPU each, and the hung trial held one of them.
        ran_on = {float(hung_node)} | {t.metrics["node"] for t in trials if t not in lost}
        assert len(ran_on) == 2
    finally:
        server.stop()
        cluster.stdin.close()  # the cluster shuts down
        try:
            cluster.wait(120)
        except subprocess.TimeoutExpired:
            cluster.kill()
