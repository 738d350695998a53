"""User workloads that fail on purpose, one way each (imported by the trainer's worker)."""

import math
import os
import time


def ok(config, report):
    for step in range(1, 4):
        if report(step, config["x"] * step):
            break
    return {"score": config["x"]}


def with_fidelity(config, report, fidelity=1):
    return {"score": float(fidelity)}


def raises(config, report):
    raise ValueError("bad hyperparameters")


def nan_loss(config, report):
    report(1, math.nan)
    return {"score": math.nan}


def oom(config, report):
    raise MemoryError("simulated: cannot allocate 80 GiB")


def segfault(config, report):
    os.abort()


def hangs(config, report):
    time.sleep(600)


def pid_then_hangs(config, report):
    """Writes its worker's pid where ``ASAP_TEST_PIDFILE`` says, then hangs."""
    with open(os.environ["ASAP_TEST_PIDFILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)


def non_numeric(config, report):
    return {"score": "high"}


def missing_metric(config, report):
    return {"other": 1.0}


def slow_bad(config, report):
    for step in range(1, 30):
        if report(step, -100.0 + step * 0.0):
            return {"score": -100.0}
        time.sleep(0.01)
    return {"score": -100.0}


def chatty(config, report):
    """Prints like a training script does, on both streams."""
    import sys
    print(f"epoch 1: x={config['x']}")
    print("a warning", file=sys.stderr)
    return {"score": config["x"]}


def quadratic(config, report):
    """An Optuna-style objective: the value alone."""
    return (config["x"] - 0.3) ** 2


def reports_then_hangs(config, report):
    """One intermediate value (a live display shows it), then trains 'forever'."""
    report(1, 0.5)
    time.sleep(600)


def pid_then_hangs_after_report(config, report, pidfile=None):
    """Reports once, writes its worker's pid to ``pidfile`` (default: ``ASAP_TEST_PIDFILE``),
    then hangs: a test kills that pid."""
    report(1, 0.5)
    with open(pidfile or os.environ["ASAP_TEST_PIDFILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)


def hang_once(config, report):
    """On Ray: the first trial to get here writes "pid node" to ``ASAP_TEST_PIDFILE`` and hangs
    (a test kills it); every other trial returns its x and the node it ran on."""
    import ray
    node = int(ray.get_runtime_context().get_node_id()[:8], 16)
    try:
        with open(os.environ["ASAP_TEST_PIDFILE"], "x") as f:
            f.write(f"{os.getpid()} {node}")
    except FileExistsError:
        return {"score": config["x"], "node": float(node)}
    time.sleep(600)


def numpy_numbers(config, report):
    import numpy as np
    return {"score": np.float32(config["x"]), "steps": np.int64(7)}


def torch_scalar(config, report):
    import torch
    return {"score": torch.tensor(config["x"])}


def huge_int(config, report):
    return {"score": 10**400}


def nan_aside(config, report):
    return {"score": config["x"], "aside": math.nan}


def exits(config, report):
    import sys
    sys.exit(3)


def interrupts(config, report):
    raise KeyboardInterrupt


def spawns_then_hangs(config, report, pidfile):
    """Starts a process of its own, writes its pid to ``pidfile``, hangs."""
    import subprocess
    child = subprocess.Popen(["sleep", "120"])
    with open(pidfile, "w") as f:
        f.write(str(child.pid))
    time.sleep(600)


def prunes_itself(config, report):
    """Reports, then stops as pruned the way Optuna's objectives do."""
    import optuna
    report(1, config["x"])
    raise optuna.TrialPruned()


def pid_or_hang(config, report):
    """Its worker's pid as a metric; hangs when x > 0.9 (a test times it out)."""
    print(f"trial with x={config['x']}")
    if config["x"] > 0.9:
        time.sleep(600)
    return {"score": config["x"], "pid": float(os.getpid())}


def reports_many(config, report):
    """A report a step, many steps (a test fills the ledger's disk with them)."""
    for step in range(100_000):
        report(step, config["x"])
    return {"score": config["x"]}


def leaves_a_daemon(config, report, pidfile):
    """Starts a ``setsid`` daemon through a shell that exits at once (the daemon is nobody's
    child then), writes its pid to ``pidfile`` and returns."""
    import subprocess
    subprocess.run(["sh", "-c", f"setsid sh -c 'echo $$ > {pidfile}.tmp; "
                    f"mv {pidfile}.tmp {pidfile}; exec sleep 600' &"], check=True)
    while not os.path.exists(pidfile):
        time.sleep(0.01)
    return {"score": config["x"]}
