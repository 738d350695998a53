"""Running the tuning graph on the australian table with a scripted model: the helpers the
graph tests share."""

from __future__ import annotations

from fakes import australian, call, proposals, run_graph

GOOD = {"alpha": 1e-4, "batch_size": 32, "depth": 2, "learning_rate_init": 1e-3, "width": 128}


def run(tmp_path, model, *, protocol="tools", tau=0.05, depth=1, **settings):
    """A session on the australian table; ``time_scale`` > 0 makes trials take (simulated) time.

    Returns the study, the final state and the run context."""
    study, ctx = australian(tmp_path, model, protocol=protocol, **settings)
    return study, run_graph(ctx, tau=tau, depth=depth), ctx


def events(study, kind):
    return [e["detail"] for e in study.events(kind)]


def copy_a(messages, kwargs):
    tool, cfg = proposals(messages)["A"]
    return call("train_on_gpu", {"params": cfg, "tool": tool})
