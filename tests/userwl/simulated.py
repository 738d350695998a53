"""User workloads that report a simulated duration (``duration: train_time`` in their space):
what the virtual clock charges for each trial, well or badly."""

import math


def constant(config, report, seconds=10.0):
    return {"score": 0.5 + 0.5 * config["x"], "train_time": seconds}


def negative(config, report):
    return {"score": config["x"], "train_time": -1.0}


def infinite(config, report):
    return {"score": config["x"], "train_time": math.inf}


def silent(config, report):
    return {"score": config["x"]}


def hour(config, report):
    """A trial an hour long on the virtual clock: longer than any LLM call on any machine."""
    return {"score": 0.5 + 0.5 * config["x"], "train_time": 3600.0}


def flat(config, report, seconds=1.0):
    """The same score whatever the configuration: a study that stagnates from its first trial."""
    return {"score": 0.5, "train_time": seconds}
