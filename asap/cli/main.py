"""The ``asap`` command line: argparse, and the rich rendering of what the library returns.

Process-wide settings belong here, not in the library: Optuna's verbosity is lowered for the
command only (its in-memory mirrors would log every trial).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import openai
from rich.console import Console

from asap.agent.server import SERVE_PORT
from asap.cli.flags import add_settings, settings_from
from asap.tools.ledger import DEFAULT_DB, Ledger
from asap.tools.study import LedgerError
from asap.tools.types import Terminated, safe_name

console = Console()
err = Console(stderr=True)  # errors and notices: stdout carries only results (--json)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("asap-hpo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
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
    ev = sub.add_parser("eval", help="compare asap with the tools it orchestrates on a grid")
    ev.add_argument("--profile", choices=["quick", "dev", "gpu", "full"], default="quick",
                    help="quick: a smoke run (~13 min on 2 CPU cores); dev: 5 tables x 10 seeds "
                    "on the virtual clock, asap against each tool, read on both axes; gpu: dev "
                    "plus real training, for a --base-url (vLLM) host; full: every task and "
                    "method")
    ev.add_argument("--tasks", help="comma-separated workloads (default: the profile's)")
    ev.add_argument("--methods", help="comma-separated methods (default: the profile's)")
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
    ev.add_argument("--db", default="asap-eval.db", help="the eval's ledger (resumes a grid)")
    ev.add_argument("--out", default="asap-eval", help="directory for the report and plots")
    add_settings(ev, ["base_url", "model"], keep_defaults=True)
    return p


def _json(data: object) -> str:
    """JSON for other programs: a NaN or an infinity (an old ledger's metric) is null, since
    JSON has neither and strict parsers refuse Python's spelling of them."""
    def clean(x: object) -> object:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return [clean(v) for v in x] if isinstance(x, list | tuple) else x
    return json.dumps(clean(data), indent=2, allow_nan=False)


def _quiet_optuna() -> None:
    """Optuna's INFO log would print every trial asap mirrors into its in-memory studies."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _chat(args: argparse.Namespace) -> int:
    from asap.cli.chat import chat, default_context, threads
    Ledger(args.db)  # a missing directory is a clear error before anything starts
    if args.list:
        from asap.cli.render import threads_table
        console.print(threads_table(threads(args.db), args.db))
        return 0
    _quiet_optuna()
    ctx, stack = default_context(args.db, args.base_url, args.model,
                                 say=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    with stack:
        chat(ctx, thread=args.thread, console=console)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from asap.evals.grid import PROFILES, Grid, run_grid
    from asap.evals.report import write_report
    _quiet_optuna()
    if args.profile == "gpu" and not args.base_url:
        raise ValueError("the gpu profile runs against a larger model: give --base-url "
                         "(e.g. a vLLM server) and --model")
    spec, changed = dict(PROFILES[args.profile]), []
    for key, value in [("tasks", args.tasks), ("methods", args.methods)]:
        if value:
            spec[key] = [v.strip() for v in value.split(",") if v.strip()]
            changed.append(f"--{key}")
    for key, flag, value in [("seeds", "--seeds", args.seeds), ("trials", "--trials", args.trials),
                             ("time_s", "--time-budget", args.time_budget),
                             ("time_scale", "--time-scale", args.time_scale),
                             ("clock", "--clock", args.clock)]:
        if value is not None:
            spec[key] = value
            changed.append(flag)
    if args.clock == "virtual" and args.time_scale is None:
        spec["time_scale"] = 0.0  # a profile's sleep has no place on the virtual clock
    if args.workers != 1:
        changed.append("--workers")
    grid = Grid(**spec, db=args.db, base_url=args.base_url, model=args.model,
                workers=args.workers)
    settings = grid.describe()
    console.print(f"[dim]{settings}[/]", highlight=False)
    from asap.cli.render import GridProgress
    progress = GridProgress(Console(stderr=True))
    try:
        ledger = run_grid(grid, progress)
    finally:
        progress.progress.stop()
    title = f"asap eval ({args.profile} profile" + (
        f", changed by {' '.join(changed)})" if changed else ")")
    path = write_report(ledger, args.out, title=title, settings=settings,
                        at_trials=grid.at_trials)
    from rich.markdown import Markdown
    text = "\n".join(x for x in path.read_text().splitlines() if not x.startswith("!["))
    console.print(Markdown(text))
    console.print(f"report: {path}")
    return 0


def _show(study_name: str, db: str, *, trials: bool = True, form: str = "table") -> int:
    from asap.agent.stats import summarize
    from asap.cli.render import print_summary, trials_table
    if not Path(db).exists():
        err.print(f"[red]error:[/] no ledger at {db}", soft_wrap=True)
        return 2
    study = Ledger(db, readonly=True).find_study(study_name)
    if form == "json":
        print(_json({"summary": summarize(study), "trials": study.to_records()}))
        return 0
    if form == "csv":
        rows = study.to_records()
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["number"])
        writer.writeheader()
        writer.writerows(rows)
        return 0
    if trials:
        console.print(trials_table(study))
    print_summary(summarize(study), console)
    return 0


def _export(study_name: str, db: str, url: str) -> int:
    from asap.tools.optuna_mirror import OptunaMirror
    _quiet_optuna()
    if not Path(db).exists():
        err.print(f"[red]error:[/] no ledger at {db}", soft_wrap=True)
        return 2
    study = Ledger(db, readonly=True).find_study(study_name)
    added = OptunaMirror(study, url).sync()
    console.print(f"{added} trials of '{study.name}' mirrored into {url} "
                  f"(optuna-dashboard {url})")
    return 0


def _studies(db: str) -> int:
    from asap.cli.render import studies_table
    if not Path(db).exists():
        err.print(f"[red]error:[/] no ledger at {db}", soft_wrap=True)
        return 2
    console.print(studies_table(Ledger(db, readonly=True), db))
    return 0


def _report(study_name: str, db: str, out: str | None) -> int:
    from asap.agent.plots import history, importance, llm_latency
    from asap.agent.record import llm_record
    from asap.agent.stats import decompose
    from asap.agent.timeline import timeline
    from asap.cli.render import calls_table, decomposition_table
    if not Path(db).exists():
        err.print(f"[red]error:[/] no ledger at {db}", soft_wrap=True)
        return 2
    study = Ledger(db, readonly=True).find_study(study_name)
    d = decompose(study)
    name = f"{safe_name(study.name)}-timeline.png"  # stays in its directory
    if out is not None and not out.endswith(".png"):  # a directory: every file inside it
        Path(out).mkdir(parents=True, exist_ok=True)
        out = str(Path(out) / name)
    png = timeline(study, out or name)
    console.print(decomposition_table(study, d))
    if d["calls"]:
        console.print(calls_table(study, d))
    if (record := llm_record(study)).decisions:
        console.print(record.sentence())
    for k in d["knobs"]:
        console.print(f"self-tuning: tau={k['tau']:.4g} depth={k['depth']} context={k['context']} "
                      f"plan={k.get('plan', 1)}")
    console.print(f"timeline: {png}", soft_wrap=True)
    # The other plots sit beside the timeline: STUDY-history.png, STUDY-importance.png.
    stem = Path(png).with_name(Path(png).name.removesuffix(".png").removesuffix("-timeline"))
    made = history(study, f"{stem}-history.png")
    console.print(f"optimization history: {made}" if made else
                  "optimization history: no complete trial yet", soft_wrap=True)
    made = llm_latency(study, f"{stem}-llm.png")
    console.print(f"LLM latency against prompt length: {made}" if made else
                  "LLM latency against prompt length: no LLM call reported its prompt", soft_wrap=True)
    _quiet_optuna()
    made, why = importance(study, f"{stem}-importance.png")
    console.print(f"parameter importance: {made}" if made else f"parameter importance: {why}", soft_wrap=True)
    return 0


def _tune(args: argparse.Namespace) -> int:
    import os

    from asap.agent.config import TuneConfig
    from asap.cli.render import RichProgress
    from asap.graphs.session import tune
    _quiet_optuna()
    cfg = TuneConfig.make(workload=args.workload, api_key=os.environ.get("OPENAI_API_KEY"),
                          **settings_from(args))
    result = tune(cfg, callbacks=[RichProgress(Console(stderr=True))])
    if args.json:
        print(_json(result))
    else:
        _show(result["study"], cfg.db, trials=False)
    return 0 if result["complete"] > 0 else 1


def _serve(args: argparse.Namespace) -> int:
    import time

    from asap.agent.server import EmbeddedServer
    with EmbeddedServer(args.model, port=args.port, n_ctx=args.ctx,
                        say=lambda m: console.print(m)) as srv:
        console.print(f"serving on {srv.base_url} (Ctrl-C stops)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one ``asap`` command; returns its exit code (2: a clear error, 130: Ctrl-C)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "llm" and args.llm_cmd == "pull":
            from asap.agent.model import pull
            path = pull(force=args.force, say=lambda m: console.print(m))
            console.print(f"default model ready: {path}")
            return 0
        if args.command == "llm" and args.llm_cmd == "serve":
            return _serve(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "show":
            return _show(args.study, args.db,
                         form="json" if args.json else "csv" if args.csv else "table")
        if args.command == "studies":
            return _studies(args.db)
        if args.command == "export":
            return _export(args.study, args.db, args.optuna_storage)
        if args.command == "report":
            return _report(args.study, args.db, args.out)
        if args.command == "eval":
            return _eval(args)
        if args.command == "chat":
            return _chat(args)
    except Terminated:
        err.print("terminated (SIGTERM): everything finished so far is saved; re-run to resume")
        return 143
    except KeyboardInterrupt:
        err.print("interrupted: everything finished so far is saved; re-run to resume")
        return 130
    except (LedgerError, RuntimeError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 2
    except openai.OpenAIError as exc:
        err.print(f"[red]error:[/] the LLM endpoint failed: {type(exc).__name__}: {exc}",
                  soft_wrap=True)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
