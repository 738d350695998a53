"""The ``asap`` command line: argparse, and the rich rendering of what the library returns.

Process-wide settings belong here, not in the library: Optuna's verbosity is lowered for the
command only (its in-memory mirrors would log every trial).
"""

from __future__ import annotations

import argparse
import csv
import errno
import gc
import json
import math
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

from asap.agent.config import endpoint_from_env
from asap.cli.flags import settings_from
from asap.cli.parser import build_parser
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import LedgerError
from asap.tools.types import Terminated, safe_name

if TYPE_CHECKING:
    from asap.agent.config import TuneConfig
    from asap.tools.workloads import Workload

PIPED_WIDTH = 100_000  # columns of stdout when it is not a terminal: a line as long as it is


def _results_console() -> Console:
    """Results on stdout: laid out to a terminal's width; piped or redirected, each line as
    long as its content (rich's default of 80 columns cut configurations there)."""
    out = Console()
    if not out.is_terminal:
        out.width = PIPED_WIDTH
    return out


console = _results_console()
err = Console(stderr=True)  # errors and notices: stdout carries only results (--json)


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
    endpoint = endpoint_from_env({"base_url": args.base_url, "model": args.model})
    ctx, stack = default_context(args.db, endpoint["base_url"], endpoint["model"],
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
                             ("clock", "--clock", args.clock), ("jobs", "--jobs", args.jobs)]:
        if value is not None:
            spec[key] = value
            changed.append(flag)
    if args.clock == "virtual" and args.time_scale is None:
        spec["time_scale"] = 0.0  # a profile's sleep has no place on the virtual clock
    if spec.get("clock") != "virtual" and args.jobs is None:
        spec.pop("jobs", None)  # a profile's cells side by side are for its virtual clock
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


def _ledger(db: str) -> Ledger:
    """The ledger a read-only command reads; a path with none is a LedgerError (exit 2)."""
    if not Path(db).exists():
        raise LedgerError(f"no ledger at {db}")
    return Ledger(db, readonly=True)


def _show(study_name: str, db: str, *, trials: bool = True, form: str = "table") -> int:
    from asap.agent.report.stats import summarize
    from asap.cli.render import print_summary, trials_table
    study = _ledger(db).find_study(study_name)
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
    from asap.tools.ledger.optuna_mirror import OptunaMirror
    _quiet_optuna()
    study = _ledger(db).find_study(study_name)
    added = OptunaMirror(study, url).sync()
    console.print(f"{added} trials of '{study.name}' mirrored into {url} "
                  f"(optuna-dashboard {url})")
    return 0


def _studies(db: str) -> int:
    from asap.cli.render import studies_table
    console.print(studies_table(_ledger(db), db))
    return 0


def _report(study_name: str, db: str, out: str | None) -> int:
    from asap.agent.record import llm_record
    from asap.agent.report.plots import history, importance, llm_latency
    from asap.agent.report.stats import decompose
    from asap.agent.report.timeline import timeline
    from asap.cli.render import calls_table, decomposition_table
    study = _ledger(db).find_study(study_name)
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
    cfg = TuneConfig.make(workload=args.workload, api_key=os.environ.get("OPENAI_API_KEY"),
                          **endpoint_from_env(settings_from(args)))
    wl = _start_workers(cfg)
    from asap.cli.render import RichProgress
    from asap.graphs.session import tune
    _quiet_optuna()
    result = tune(cfg, callbacks=[RichProgress(Console(stderr=True))], workload=wl)
    if args.json:
        print(_json(result))
    else:
        _show(result["study"], cfg.db, trials=False)
    return 0 if result["complete"] > 0 else 1


def _start_workers(cfg: TuneConfig) -> Workload | None:
    """Resolve the workload and start the trials' fork server, which imports its module (torch,
    scikit-learn), before this process imports the graphs: on a second core the two overlap,
    and the session's own start finds the server running. Returns the workload for the session;
    None when it does not resolve, left to the session, which says why."""
    from asap.tools.workloads import resolve
    try:
        wl = resolve(cfg.workload, space_file=cfg.space, time_scale=cfg.time_scale)
    except (OSError, ValueError):  # WorkloadError, SpaceError among them
        return None
    if cfg.forks_workers:  # else trials here or on Ray: no fork server
        from asap.tools.trials.workers import fork_server, preload_of
        fork_server(preload_of(wl))
    return wl


def _serve(args: argparse.Namespace) -> int:
    import time

    from asap.agent.llm.server import EmbeddedServer
    with EmbeddedServer(args.model, port=args.port, n_ctx=args.ctx,
                        say=lambda m: console.print(m)) as srv:
        console.print(f"serving on {srv.base_url} (Ctrl-C stops)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    return 0


def _init_langgraph(args: argparse.Namespace) -> int:
    from asap.graphs.app import langgraph_config
    path = Path(args.dir) / "langgraph.json"
    if path.exists() and not args.force:
        raise ValueError(f"{path} exists; --force replaces it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(langgraph_config(args.base_url, args.model), indent=2) + "\n")
    console.print(f"wrote {path}: serve it with `langgraph dev --config {path}` (the LLM at "
                  f"{args.base_url}: `asap llm serve` starts the embedded one)", soft_wrap=True)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from asap.agent.llm.model import pull
    path = pull(force=args.force, say=lambda m: console.print(m))
    console.print(f"default model ready: {path}")
    return 0


# Each command's handler, by its words on the command line.
COMMANDS = {
    ("llm", "pull"): _pull,
    ("llm", "serve"): _serve,
    ("tune",): _tune,
    ("show",): lambda a: _show(a.study, a.db,
                               form="json" if a.json else "csv" if a.csv else "table"),
    ("studies",): lambda a: _studies(a.db),
    ("export",): lambda a: _export(a.study, a.db, a.optuna_storage),
    ("report",): lambda a: _report(a.study, a.db, a.out),
    ("eval",): _eval,
    ("chat",): _chat,
    ("init-langgraph",): _init_langgraph,
}


def main(argv: list[str] | None = None) -> int:
    """Run one ``asap`` command; returns its exit code (2: a clear error, 130: Ctrl-C)."""
    args = build_parser().parse_args(argv)
    words = (args.command, args.llm_cmd) if args.command == "llm" else (args.command,)
    try:
        return COMMANDS[words](args)
    except Terminated:
        err.print("terminated (SIGTERM): everything finished so far is saved; re-run to resume")
        return 143
    except KeyboardInterrupt:
        err.print("interrupted: everything finished so far is saved; re-run to resume")
        return 130
    except (LedgerError, RuntimeError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 2
    except sqlite3.Error as exc:  # after the ledger was opened and checked: a full disk
        err.print(f"[red]error:[/] the ledger cannot be written ({exc}): everything recorded "
                  "so far is kept; free some space, then re-run to resume", soft_wrap=True)
        return 2
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        err.print(f"[red]error:[/] no space left on the device: {exc.filename or exc}; free "
                  "some space, then re-run", soft_wrap=True)
        return 2
    except _openai_error() as exc:
        err.print(f"[red]error:[/] the LLM endpoint failed: {type(exc).__name__}: {exc}",
                  soft_wrap=True)
        return 2


def run() -> NoReturn:
    """The ``asap`` command: :func:`main`, then a quick exit.

    ``gc.freeze()`` before the interpreter's teardown spares it the collections over every
    object a session imported and made (langgraph, scikit-learn, Nevergrad...), most of the
    command's time after its last line (docs/evaluation.md). Nothing is lost to it: the ledger's file already holds the session (:meth:`Ledger.checkpoint`), the workers
    and the embedded server are stopped, atexit handlers and the std streams' flush still run.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def _openai_error() -> type[Exception]:
    """openai's base error, imported when one reaches the command (not with every command;
    ``asap.agent.llm.client.openai_error`` would import langchain-core with the CLI)."""
    import openai

    return openai.OpenAIError


if __name__ == "__main__":
    sys.exit(main())
