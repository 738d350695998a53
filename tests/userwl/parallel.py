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
