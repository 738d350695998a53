"""``asap tune``: open or resume a study, start the LLM, run the tuning graph, summarize.

Example::

    from asap.agent.config import TuneConfig
    from asap.agent.tune import tune
    summary = tune(TuneConfig(workload="digits-mlp", trials=10))
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from asap.agent.config import TuneConfig
from asap.agent.ledger import Ledger, LedgerError, Study, Trial
from asap.agent.llm import chat_model, pick_protocol
from asap.agent.prompt import PromptBuilder
from asap.agent.selftune import Bounds
from asap.agent.summary import cached_share, summarize
from asap.graphs.tuning import PANEL, Runtime, build_tuning_graph, recursion_limit
from asap.tools.portfolio import Portfolio
from asap.tools.pruning import Pruner
from asap.tools.trainer import Trainer
from asap.tools.workloads import Workload, resolve

SIMULATED = ("hpobench:", "nasbench201:")  # tabular workloads: training is a sleep
TOOLS_TEXT = "\n".join(f"- {lib}:{alg}" for lib, alg in PANEL) + \
    "\n- llm (your own configuration)"


def open_study(ledger: Ledger, cfg: TuneConfig, wl: Workload, console: Console) -> Study:
    """The study named by ``cfg``: resumed if it exists (interrupted trials marked failed)."""
    if not ledger.has_study(cfg.study_name):
        try:
            return ledger.create_study(cfg.study_name, wl.space, metric=wl.metric,
                                       direction=wl.direction, workload=cfg.workload)
        except LedgerError:  # another process created it a moment ago: join it
            if not ledger.has_study(cfg.study_name):
                raise
    study = ledger.open_study(cfg.study_name)
    if study.workload and study.workload != cfg.workload:
        raise ValueError(f"study '{study.name}' tunes {study.workload}, not {cfg.workload}; "
                         "pick another --study")
    lost = study.fail_running("interrupted: the tuning process stopped during this trial")
    console.print(f"resuming study '{study.name}' ({len(study.finished_ids())} finished trials"
                  + (f", {len(lost)} interrupted marked failed" if lost else "") + ")")
    return study


def tune(cfg: TuneConfig, *, console: Console | None = None, llm: BaseChatModel | None = None,
         on_trial: Callable[[Trial, str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a tuning session; returns the summary that ``--json`` prints.

    ``llm``: a chat model to decide with instead of the endpoint in ``cfg`` (an agent under
    evaluation, or a fake in tests); no server is started then. ``on_trial(trial, tool)`` is
    called as each trial finishes (the chat streams progress with it).

    Ctrl-C (KeyboardInterrupt) cancels the running trial, records it as failed, logs the session
    and re-raises: everything finished is in the ledger and a re-run resumes.
    """
    console = console or Console(stderr=True)
    wl = resolve(cfg.workload, space_file=cfg.space, time_scale=cfg.time_scale)
    ledger = Ledger(cfg.db)  # raises LedgerError naming a missing directory
    new = not ledger.has_study(cfg.study_name)
    study = open_study(ledger, cfg, wl, console)
    started, protocol, interrupted = time.time(), None, True
    try:
        with contextlib.ExitStack() as stack:
            if llm is None:
                base_url, model = cfg.base_url, cfg.model
                if base_url is None:
                    from asap.agent.server import EmbeddedServer
                    srv = stack.enter_context(EmbeddedServer(model, say=console.print))
                    base_url, model = srv.base_url, "default"
                llm = chat_model(base_url, model or "default", api_key=cfg.api_key,
                                 timeout_s=cfg.llm_timeout_s)
            protocol = pick_protocol(llm, cfg.decide, study)
            progress = stack.enter_context(_progress(console))
            task = progress.add_task("tuning", total=cfg.trials, info=f"{protocol} protocol",
                                     completed=len(study.finished_ids()))

            def trial_done(trial: Trial, tool: str) -> None:
                progress.update(task, completed=len(study.finished_ids()),
                                info=_live_info(study, tool))
                if on_trial is not None:
                    on_trial(trial, tool)

            rt = Runtime(study, Portfolio(study, seed=cfg.seed),
                         Trainer(study, wl, pruner=Pruner(study, cfg.pruner)),
                         PromptBuilder(study, TOOLS_TEXT, mode=cfg.prompt, context=cfg.context or 24),
                         llm, protocol=protocol,
                         max_trials=cfg.trials, time_budget_s=cfg.time_budget_s,
                         max_retries=cfg.max_retries, on_trial=trial_done,
                         speculation=speculation_mode(cfg), tau=cfg.tau, depth=cfg.depth or 1,
                         bounds=_bounds(cfg),
                         selftune_every=cfg.selftune_every if cfg.selftune else 0)
            if len(study.finished_ids()) < cfg.trials:
                with _cancel_on_ctrl_c(rt):
                    build_tuning_graph(rt).invoke({}, {"recursion_limit": recursion_limit(rt)})
        interrupted = False
    except Exception:
        if new and not study.trials():  # failed before its first trial: leave nothing behind
            ledger.delete_study(study.name)
            study = None
        raise
    finally:
        if study is not None:  # Ctrl-C and errors log the session as interrupted
            study.log_event("session", start=started, end=time.time(), protocol=protocol,
                            prompt=cfg.prompt, interrupted=interrupted)
    return summarize(study)


def _bounds(cfg: TuneConfig) -> Bounds:
    """Self-tuning's bounds; a knob the user set is pinned to their value."""
    fixed: dict[str, int] = {}
    if cfg.context is not None:
        fixed |= {"context_min": cfg.context, "context_max": cfg.context}
    if cfg.depth is not None:
        fixed |= {"depth_min": cfg.depth, "depth_max": cfg.depth}
    return Bounds().model_copy(update=fixed)


CTRL_C = "interrupted by the user (Ctrl-C)"


@contextlib.contextmanager
def _cancel_on_ctrl_c(rt: Runtime) -> Iterator[None]:
    """Ctrl-C cancels the trial in flight at once, then interrupts as usual.

    Why a handler: the trial is awaited on a LangGraph worker thread, and the graph lets running
    branches finish before the KeyboardInterrupt reaches us; cancelling first makes that prompt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers live in the main thread only
        return

    def interrupt(signum: int, frame: object) -> None:
        rt.trainer.cancel_all(CTRL_C)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        # The signal can land between a trial's row and its job (or the graph may have dropped
        # a branch): wait for the cancelled workers to be recorded, then close any row left open.
        rt.trainer.cancel_all(CTRL_C, wait_s=30)
        rt.study.fail_running(CTRL_C)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def speculation_mode(cfg: TuneConfig) -> str:
    """``auto``: speculate when training and the LLM do not compete for the same cores.

    Measured on a 2-core CPU: overlapping the embedded LLM with torch training made 10 digits-mlp
    trials take 229.8 s instead of ~100 s serially (each slowed the other ~3x). With training on
    a GPU, the LLM at a remote endpoint, or a tabular workload's simulated clock (a sleep), the
    two really run in parallel.
    """
    if cfg.speculation != "auto":
        return cfg.speculation
    if cfg.base_url or cfg.workload.startswith(SIMULATED):
        return "threshold"
    import torch
    return "threshold" if torch.cuda.is_available() else "off"


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=console)


def _live_info(study: Study, tool: str) -> str:
    """Best value, last tool, last LLM latency and the cache reuse so far."""
    best, calls = study.best(), study.timings("llm_call")
    parts = [f"best {best.value:.4f}" if best else "no complete trial", f"last {tool}"]
    if calls:
        parts.append(f"llm {calls[-1]['duration']:.1f}s")
        share = cached_share(calls)
        parts.append(f"cache {share:.0%}" if share is not None else "cache unknown")
    return " | ".join(parts)
