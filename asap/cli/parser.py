"""The ``asap`` command's arguments. The settings flags are generated from TuneConfig
(:mod:`asap.cli.flags`); the command reference is generated from this parser
(:mod:`asap.cli.reference`)."""

from __future__ import annotations

import argparse

from asap.agent.llm.server import SERVE_PORT
from asap.cli.flags import add_settings
from asap.tools.types import DEFAULT_DB


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("asap-hpo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``asap`` command's parser: every subcommand and flag (``tune``'s settings flags
    come from TuneConfig: :mod:`asap.cli.flags`)."""
    p = argparse.ArgumentParser(prog="asap", description="Agentic hyperparameter optimization.")
    p.add_argument("--version", action="version", version=f"asap-hpo {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    llm = sub.add_parser("llm", help="the embedded LLM").add_subparsers(dest="llm_cmd", required=True)
    pull = llm.add_parser("pull", help="fetch the default model (SmolLM2-135M-Instruct GGUF)")
    pull.add_argument("--force", action="store_true", help="fetch again even if cached")
    serve = llm.add_parser("serve", help="run the embedded llama.cpp server on 127.0.0.1")
    serve.add_argument("--model", help="a GGUF file (default: SmolLM2-135M-Instruct)")
    serve.add_argument("--port", type=int, default=SERVE_PORT,
                       help=f"port (default {SERVE_PORT}, what langgraph.json expects; 0: a free one)")
    serve.add_argument("--ctx", type=int, default=8192, help="context length per request, in tokens")
    tune = sub.add_parser("tune", help="tune a workload with the LLM orchestrating the tools")
    tune.add_argument("workload", help="digits-mlp, digits-cnn, charlm, hpobench:<ds>, "
                      "nasbench201:<ds> or package.module:function (runs your code)")
    add_settings(tune)  # every TuneConfig field, its help and default from the model
    tune.add_argument("--json", action="store_true", help="print the summary as JSON")
    export = sub.add_parser("export", help="mirror a study into an Optuna storage")
    export.add_argument("study")
    export.add_argument("--db", default=DEFAULT_DB, help=f"ledger file (default: {DEFAULT_DB})")
    export.add_argument("--optuna-storage", metavar="URL", required=True,
                        help="Optuna storage URL, e.g. sqlite:///optuna.db")
    show = sub.add_parser("show", help="print a study's trials and summary")
    show.add_argument("study")
    show.add_argument("--db", default=DEFAULT_DB, help=f"ledger file (default: {DEFAULT_DB})")
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the summary and every trial as JSON")
    form.add_argument("--csv", action="store_true", help="one CSV row per trial")
    studies = sub.add_parser("studies", help="list the studies in a ledger")
    studies.add_argument("--db", default=DEFAULT_DB, help=f"ledger file (default: {DEFAULT_DB})")
    report = sub.add_parser("report", help="wall-clock decomposition; timeline, optimization "
                            "history and parameter importance PNGs")
    report.add_argument("study")
    report.add_argument("--db", default=DEFAULT_DB, help=f"ledger file (default: {DEFAULT_DB})")
    report.add_argument("--out", help="a directory (created) for its four PNGs: STUDY-timeline, "
                        "-history, -llm (latency against prompt length) and -importance; or "
                        "the timeline's .png path, the others beside it (default: here)")
    ch = sub.add_parser("chat", help="tune in a conversation: say what to tune, confirm, ask")
    ch.add_argument("--thread", help="resume this thread")
    ch.add_argument("--list", action="store_true", help="list the threads and exit")
    add_settings(ch, ["db", "base_url", "model"],
                 {"db": f"ledger file; threads are stored in it too (default: {DEFAULT_DB})"},
                 keep_defaults=True)
    lg = sub.add_parser("init-langgraph", help="write a langgraph.json that serves asap's graphs "
                        "(tune, tuning, chat) by module path, for langgraph dev or build")
    lg.add_argument("--dir", default=".", help="where to write it (default: here)")
    lg.add_argument("--base-url", default="http://127.0.0.1:8080/v1",
                    help="the LLM endpoint the graphs use (default: asap llm serve's)")
    lg.add_argument("--model", default="default", help="the model name at --base-url")
    lg.add_argument("--force", action="store_true", help="replace an existing langgraph.json")
    ev = sub.add_parser("eval", help="compare asap with the tools it orchestrates on a grid")
    ev.add_argument("--profile", choices=["quick", "dev", "gpu", "full"], default="quick",
                    help="quick: a smoke run (~13 min on 2 CPU cores); dev: 5 tables x 10 seeds "
                    "on the virtual clock, asap against each tool, read on both axes; gpu: dev "
                    "plus real training, for a --base-url (vLLM) host; full: every task and "
                    "method")
    ev.add_argument("--tasks", help="comma-separated workloads (default: the profile's): "
                    "hpobench:australian, hpobench:car, hpobench:credit_g, hpobench:kc1, "
                    "nasbench201:cifar10, digits-mlp, charlm, or any workload reference")
    ev.add_argument("--methods", help="comma-separated methods (default: the profile's): "
                    "asap, asap-nospec, asap-naive, asap-noselftune (ablations), llm-naive "
                    "(an LLM proposes alone), prior, prior-w1, prior-cool, prior-eips, prior-gp, "
                    "prior-nodesign (no LLM), "
                    "tpe, cmaes, ngopt, random (one tool), optuna-gp (Optuna's GPSampler, "
                    "its defaults), smac (SMAC3's HPO facade: pip install 'asap-hpo[smac]'), "
                    "portfolio (the tools in turn)")
    ev.add_argument("--seeds", type=int, help="seeds per task and method")
    ev.add_argument("--trials", type=int, help="trial budget per run")
    ev.add_argument("--time-budget", type=float,
                    help="budget per run in seconds of the grid's clock (virtual default: "
                    "HPOBench 4 h, NAS-Bench-201 24 h simulated; real default: 600)")
    ev.add_argument("--time-scale", type=float,
                    help="tables sleep train_time x this many real seconds")
    ev.add_argument("--clock", metavar="{real,virtual}",
                    help="virtual: runs go on until their simulated budget (--trials caps "
                    "them) and the report reads both axes (default: the profile's)")
    ev.add_argument("--workers", type=int, default=1,
                    help="trials in flight per run (default 1; llm-naive stays serial)")
    ev.add_argument("--jobs", type=int,
                    help="cells run side by side, each in its own process with its share of "
                    "the cores (virtual clock only; default: the profile's, 2 for dev, else 1)")
    ev.add_argument("--db", default="asap-eval.db", help="the eval's ledger (resumes a grid)")
    ev.add_argument("--out", default="asap-eval", help="directory for the report and plots")
    add_settings(ev, ["base_url", "model"], keep_defaults=True)
    return p
