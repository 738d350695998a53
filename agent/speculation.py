"""Speculation's policy: when to speculate at all, and when a speculative round is kept.

The branch itself is :mod:`asap.graphs.speculative`; the prediction is
:class:`~asap.agent.prior.surrogate.Surrogate`'s.
"""

from __future__ import annotations

from typing import Literal

from asap.agent.config import TuneConfig
from asap.agent.llm.server import is_loopback
from asap.tools.trials.resources import gpu_count
from asap.tools.workloads import is_tabular

SpeculationMode = Literal["off", "threshold", "lossless"]


def accept(predicted: float, actual: float, tau: float, eps: float = 1e-12) -> bool:
    """Threshold mode's test: ``|predicted - actual| / max(|actual|, eps) <= tau``."""
    return abs(predicted - actual) / max(abs(actual), eps) <= tau


def speculation_mode(cfg: TuneConfig) -> SpeculationMode:
    """``auto``: speculate when training and the LLM do not compete for the same cores.

    A server on this machine (the chat passes the embedded server's URL) competes for the cores
    unless training runs on a GPU: on a small CPU, overlapping the embedded LLM with torch
    training slows both (docs/speculation-and-selftuning.md). With training on
    a GPU, the LLM at a remote endpoint, or a tabular workload's simulated clock (a sleep), the
    two really run in parallel. A table at ``time_scale`` 0 trains in no time: there is nothing
    to hide a speculative call behind, so it would only double the LLM's work. On the virtual
    clock training is simulated too, and a speculative call is charged only for what outlasts
    its trial, as in the real system it stands for.
    """
    if cfg.speculation != "auto":
        return cfg.speculation
    if cfg.clock == "virtual":
        return "threshold"
    if is_tabular(cfg.workload):  # training is a sleep of the simulated clock
        return "threshold" if cfg.time_scale > 0 else "off"
    if cfg.base_url and not is_loopback(cfg.base_url):  # the LLM runs on another machine
        return "threshold"
    # The LLM on this machine (the embedded server, a local vLLM): a GPU trains beside it.
    # Asked without importing torch on a host with no NVIDIA driver (2 s, for a scikit-learn
    # objective that never needs it).
    return "threshold" if gpu_count() else "off"
