"""What every built-in workload shares: the device choice and the NaN check."""

from __future__ import annotations

import math

import torch


class NonFiniteLoss(FloatingPointError):
    """Training diverged; the trainer records the trial as failed with this reason."""


def device() -> torch.device:
    """CUDA when present, CPU otherwise; a GPU host needs no flag."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"NaN/inf loss at step {step}")


def make_optimizer(params, config: dict) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW from a config with conditional parameters."""
    lr, wd = config["lr"], config["weight_decay"]
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=config["momentum"])
    cls = torch.optim.Adam if config["optimizer"] == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=wd, betas=(config.get("beta1", 0.9), 0.999))
