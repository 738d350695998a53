"""User workloads for the N-worker tests (imported by the trainer's workers or its threads)."""

import os
import time
from pathlib import Path


def rendezvous(config, report, barrier=None):
    """Succeeds only if another trial ran beside it: the first trials wait (up to a minute) for a
    second marker in the ``barrier`` folder (default: ``ASAP_TEST_BARRIER``); later ones find two
    already there. With one worker the first trial can never meet anyone and fails."""
    folder = Path(barrier or os.environ["ASAP_TEST_BARRIER"])
    (folder / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 60
    while len(list(folder.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("no other trial ran beside this one")
        time.sleep(0.01)
    return {"score": config["x"]}


def where(config, report):
    """What the worker was given: its GPUs (as CUDA_VISIBLE_DEVICES) and its torch threads."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {"score": config["x"], "gpu": float(visible) if visible else -1.0,
            "threads": float(torch.get_num_threads())}


def stamped(config, report, hold_s=1.0):
    """Notes when its first line ran (the epoch's seconds), then holds ``hold_s``."""
    began = time.time()
    time.sleep(hold_s)
    return {"score": config["x"], "began": began}


def _await(path: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited a minute for {what}")
        time.sleep(0.01)


def overtaken(config, report, barrier=None):
    """Trials end out of order: the first to arrive ends only after another trial has ended
    (an ``ended`` marker in the ``barrier`` folder); every other one ends at once."""
    folder = Path(barrier or os.environ["ASAP_TEST_BARRIER"])
    try:
        os.close(os.open(folder / "first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        (folder / "ended").touch()
        return {"score": config["x"]}
    _await(folder / "ended", "another trial to end")
    return {"score": config["x"]}


def gated(config, report, barrier=None):
    """``x`` < 0.5 waits for a ``go`` file in the ``barrier`` folder; any other ``x`` writes
    ``ran`` there and returns at once."""
    folder = Path(barrier or os.environ["ASAP_TEST_BARRIER"])
    if config["x"] < 0.5:
        _await(folder / "go", "the go file")
    else:
        (folder / "ran").touch()
    return {"score": config["x"]}


def draws(config, report):
    """Unseeded draws from Python's and NumPy's global generators."""
    import random

    import numpy as np

    return {"score": float(np.random.rand()), "py": random.random()}
