"""A tuning session: open or resume a study, reach the LLM, run the tuning graph, summarize.

This is the facade over :mod:`asap.graphs.tuning`. It reports through callbacks
(:class:`TuneCallback`, like syne-tune's ``TunerCallback`` and Optuna's ``callbacks``), never a
console: the CLI renders them with rich, the chat streams them, a library user passes their own.

Example::

    from asap.agent.config import TuneConfig
    from asap.graphs.session import tune
    summary = tune(TuneConfig(workload="digits-mlp", trials=10))
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel

from asap.agent.config import ConfigError, TuneConfig
from asap.agent.llm.client import chat_model
from asap.agent.llm.deadline import session_stop
from asap.agent.llm.protocols import AUTO, DEFAULT, pick_protocol
from asap.agent.llm.server import EmbeddedServer, ServerError, endpoint, is_llamacpp
from asap.agent.report.stats import summarize
from asap.agent.speculation import speculation_mode
from asap.graphs.callbacks import Fanout, Mirroring, TuneCallback, progress_events
from asap.graphs.context import TuneContext, make_context
from asap.graphs.growth import Growth
from asap.graphs.tuning import graph
from asap.tools.hpo.panel import PANEL, TOOLS, Tool, panel_of
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.hpo.pruning import Pruner
from asap.tools.ledger.store import Ledger, check_ledger_path
from asap.tools.ledger.study import Study
from asap.tools.trials.backend import ForkServerBackend, InProcessBackend, TrialBackend
from asap.tools.trials.caller import CallerThread
from asap.tools.trials.clock import Clock, ClockError, make_clock
from asap.tools.trials.resources import (
    ResourceError,
    Slot,
    default_workers,
    one_thread_blas,
    one_thread_pools,
    plan_slots,
    usable_cores,
)
from asap.tools.trials.trainer import Trainer
from asap.tools.types import Cancel, Cancelled, Terminated
from asap.tools.workloads import Workload, check_clock, resolve

CTRL_C = "interrupted by the user (Ctrl-C)"
SIGTERM = "terminated (SIGTERM)"


def open_study(ledger: Ledger, cfg: TuneConfig, space: Any, metric: str, direction: str,
               say: TuneCallback, clock: Clock | None = None) -> Study:
    """The study named by ``cfg``, its time stamps on ``clock``: resumed if it exists
    (interrupted trials marked failed)."""
    existed = ledger.has_study(cfg.study_name)
    study = ledger.open_or_create(cfg.study_name, space, metric=metric, direction=direction,
                                  workload=cfg.workload)
    study.clock = clock or study.clock
    if existed:
        lost = study.fail_running("interrupted: the tuning process stopped during this trial")
        say.on_message(f"resuming study '{study.name}' ({len(study.finished_ids())} finished "
                       "trials" + (f", {len(lost)} interrupted marked failed" if lost else "")
                       + ")")
    return study


def tune(cfg: TuneConfig, *, llm: BaseChatModel | None = None,
         callbacks: Sequence[TuneCallback] = (), workload: Workload | None = None,
         cancel: Cancel | None = None, panel: tuple[Tool, ...] | None = None) -> dict[str, Any]:
    """Run (or resume) a tuning session; returns the summary that ``--json`` prints.

    ``llm``: a chat model to decide with instead of the endpoint in ``cfg`` (an agent under
    evaluation, or a fake in tests); no server is started then. With ``cfg.llm`` off the panel
    and the prior decide every round: no endpoint is reached and no server started. ``workload``: one already
    resolved (``asap.optimize``'s objective), instead of resolving ``cfg.workload``. ``panel``:
    the tools as objects (a user's own Optuna samplers among them,
    :func:`~asap.tools.hpo.panel.panel_from`), in place of the tools ``cfg.panel`` names.

    Ctrl-C (KeyboardInterrupt) or SIGTERM (:class:`Terminated`) cancels the running trial,
    records it as failed, logs the session and re-raises: everything finished is in the ledger
    and a re-run resumes. ``cancel``, set from any thread, does the same and raises
    :class:`~asap.tools.types.Cancelled` (a KeyboardInterrupt): how a session on a worker
    thread is stopped (the chat's Ctrl-C, a LangGraph server's ``runs.cancel``).
    """
    say = Fanout(callbacks)
    wl = workload or resolve(cfg.workload, space_file=cfg.space, time_scale=cfg.time_scale)
    check_clock(wl, cfg.clock)
    slots = worker_slots(cfg) if cfg.backend == "local" else None
    check_ledger_path(cfg.db)  # everything is checked before the ledger file is created
    if cfg.optuna_storage:
        from asap.tools.ledger.optuna_mirror import check_storage  # SQLAlchemy: only when used
        check_storage(cfg.optuna_storage, cfg.study_name, wl.space.to_json(), wl.direction)
    grammar, server = False, None
    with contextlib.ExitStack() as stack:
        if cfg.backend == "ray":  # the cluster answers and has the GPUs, or nothing is written
            slots = _ray_slots(stack, cfg, say)
        if llm is None and cfg.llm:
            if cfg.base_url is None:  # the embedded server
                server = stack.enter_context(EmbeddedServer(cfg.model, say=say.on_message)
                                             .reserve())
                base_url, model, grammar = server.base_url, "default", True
                if speculation_mode(cfg) == "threshold":
                    # The LLM runs beside training (a GPU trains, or the clock is simulated):
                    # loaded now, it reads the first round's prompt while that round trains.
                    # Otherwise it shares the cores with the trials and loads when a call is
                    # first due (a session whose calls never pay never loads it).
                    if not server.ready(wait=True):
                        raise server.error or ServerError("the embedded server did not start")
            else:
                base_url, model = endpoint(stack, cfg.base_url, cfg.model,
                                           api_key=cfg.api_key, say=say.on_message)
                grammar = is_llamacpp(base_url, cfg.api_key)
            llm = chat_model(base_url, model, api_key=cfg.api_key, timeout_s=cfg.llm_timeout_s)
        return _session(cfg, wl, llm, say, cancel or Cancel(), grammar, slots, server,
                        panel or panel_of(cfg.panel))


def _ray_slots(stack: contextlib.ExitStack, cfg: TuneConfig, say: TuneCallback) -> list[Slot]:
    from asap.tools.trials.ray_backend import RayError, ray_cluster, ray_slots
    try:
        ray = stack.enter_context(ray_cluster(cfg.ray_address))
        slots = ray_slots(ray, cfg.workers, cfg.gpus_per_trial)
    except (RayError, ResourceError) as exc:
        raise ConfigError(str(exc)) from None
    where = cfg.ray_address or "a local Ray instance"
    say.on_message(f"Ray: {len(slots)} trial(s) at a time on {where} "
                   f"({ray.cluster_resources().get('CPU', 0):g} CPUs, "
                   f"{ray.cluster_resources().get('GPU', 0):g} GPUs)")
    return slots


def _trainer(cfg: TuneConfig, study: Study, wl: Workload, slots: list[Slot], started: float,
             cancel: Cancel, say: TuneCallback, caller: CallerThread | None) -> Trainer:
    """The session's trainer: worker processes here, or Ray tasks (``--backend ray``), or
    this process (``isolate=False``; on ``caller``'s thread when given)."""
    backend: TrialBackend
    if cfg.forks_workers:
        backend = ForkServerBackend(reuse=cfg.reuse_workers)
    elif cfg.trials_here:
        backend = InProcessBackend(caller)
    else:
        from asap.tools.trials.ray_backend import RayBackend
        backend = RayBackend(gpus_per_trial=cfg.gpus_per_trial or 0.0)
    return Trainer(study, wl, pruner=Pruner(study, cfg.pruner), seed=cfg.seed, backend=backend,
                   time_limit_s=cfg.trial_timeout_s,
                   stop_at=None if cfg.time_budget_s is None else started + cfg.time_budget_s,
                   cancel=cancel, progress=progress_events(study, say), slots=slots)


def worker_slots(cfg: TuneConfig) -> list[Slot]:
    """The session's workers and what each may use (:func:`plan_slots`); a request this machine
    cannot meet is a :class:`ConfigError` naming it, before anything is written."""
    try:
        return plan_slots(cfg.workers or default_workers(), cfg.gpus_per_trial)
    except ResourceError as exc:
        raise ConfigError(str(exc)) from None


def _session(cfg: TuneConfig, wl: Workload, llm: BaseChatModel | None, say: TuneCallback,
             cancel: Cancel, grammar: bool = False, slots: list[Slot] | None = None,
             server: EmbeddedServer | None = None, panel: tuple[Tool, ...] = PANEL
             ) -> dict[str, Any]:
    """The session proper, on a reachable LLM: open the study, run the graph, log, summarize."""
    ledger = Ledger(cfg.db)
    new = not ledger.has_study(cfg.study_name)
    clock = session_clock(ledger, cfg)
    study: Study | None = open_study(ledger, cfg, wl.space, wl.metric, wl.direction, say, clock)
    started, protocol, interrupted, mirror, trainer = clock.now(), None, True, None, None
    slots = slots or [Slot(0)]
    # The cores the trials had, where a trial's CPU use tells how busy it kept them: worker
    # processes here, on the CPU, timed on the real clock (stats.cores).
    cpu_cores = usable_cores() if cfg.forks_workers and not any(s.gpus for s in slots) \
        and not clock.virtual else None
    opened = len(study.finished_ids())
    try:
        if cfg.optuna_storage:  # every finished trial is mirrored as it lands
            from asap.tools.ledger.optuna_mirror import OptunaMirror
            mirror = OptunaMirror(study, cfg.optuna_storage)
            mirror.sync()
            say = Fanout([say, Mirroring(mirror, say)])
        llm = llm if cfg.llm else None
        protocol = _protocol(cfg, llm, study, server) if llm is not None else None
        say.on_session_start(study, cfg.trials, protocol)
        if len(slots) > 1 and cfg.backend == "local":
            say.on_message(f"{len(slots)} workers: " + ", ".join(
                f"#{s.index} {s.describe()}" for s in slots))
        # One in-process trial at a time on the real clock runs on this thread, the graph beside
        # it (asap.tools.trials.caller says why); table lookups on the virtual clock stay inline.
        caller = CallerThread() if cfg.trials_here and len(slots) == 1 and not clock.virtual \
            else None
        trainer = _trainer(cfg, study, wl, slots, started, cancel, say, caller)
        ctx = make_context(
            study, Portfolio(study, seed=cfg.seed, width=cfg.width, panel=panel,
                             design=TOOLS[cfg.design] if cfg.design else None),
            trainer, llm, cfg, protocol=protocol or DEFAULT, grammar=grammar, started=started,
            on_trial=lambda trial, tool: say.on_trial_complete(study, trial, tool),
            on_phase=lambda phase: say.on_phase(study, phase),
            on_decision=lambda decision: say.on_decision(study, decision),
            say=say.on_message, llm_ready=_ready(server, study, say),
            growth=Growth(cpu_cores if cfg.workers is None and len(slots) == 1 else None))
        if opened >= cfg.trials:
            say.on_message(f"study '{study.name}' already has {opened} finished trials and "
                           f"trials={cfg.trials} counts the study's total: none run; ask for "
                           f"more than {opened} to go on")
        else:
            ctx.trainer.prestart()  # the fork server loads while the first round decides
            # The session's calls stop being waited for once it is cancelled.
            stopping = session_stop.set(cancel)
            try:
                # The tuner's pools at one thread; an objective that runs here keeps its own
                quiet = one_thread_pools() if not cfg.trials_here else \
                    one_thread_blas() if caller is not None else contextlib.nullcontext()
                with _cancel_on_signals(ctx), quiet as around:
                    _run_graph(ctx, caller, cancel, around)
            except Exception:
                if trainer.fatal is None and not cancel.is_set():
                    raise
            finally:
                session_stop.reset(stopping)
        if trainer.fatal is not None:  # a trial the clock could not price, a full disk
            raise trainer.fatal
        if cancel.is_set():
            study.fail_running(cancel.reason)
            raise Cancelled(cancel.reason)
        interrupted = False
    except Exception as exc:
        if new and (not study.trials() or (isinstance(exc, ClockError) and not study.best())):
            # failed before its first trial (or its first result): leave nothing behind
            ledger.delete_study(study.name)
            study = None
            if mirror is not None:
                mirror.drop_if_empty()
        raise
    finally:
        if trainer is not None:
            trainer.close()
        if study is not None:  # Ctrl-C and errors log the session as interrupted
            # (not on a ledger that cannot be written: its error is the one to show)
            with contextlib.suppress(sqlite3.Error):
                study.log_event("session", start=started, end=clock.now(), protocol=protocol,
                                prompt=cfg.prompt, interrupted=interrupted, clock=clock.name,
                                backend=cfg.backend, cores=cpu_cores,
                                workers=len(slots) if trainer is None else trainer.workers)
        with contextlib.suppress(sqlite3.Error):
            ledger.checkpoint()  # the ledger file alone holds the session
        clock.close()
        say.on_session_end(study, interrupted)
    return {**summarize(study), "ran": len(study.finished_ids()) - opened}


def _run_graph(ctx: TuneContext, caller: CallerThread | None, cancel: Cancel,
               around: Callable[[], contextlib.AbstractContextManager[Any]] | None) -> None:
    """The tuning graph to its end: on this thread, or, with ``caller``, on a thread of its own
    while this one runs the trials it hands over (each inside ``around()``); its error, or a
    Ctrl-C here, is raised here once the graph has stopped (a Ctrl-C cancels the session,
    which the graph sees)."""
    def run() -> None:
        graph.invoke(ctx.initial_state(), {"recursion_limit": ctx.recursion_limit()},
                     context=ctx)

    if caller is None:
        return run()
    failed: list[BaseException] = []

    def drive() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread below
            failed.append(exc)
        finally:
            caller.stop()

    driver = threading.Thread(target=contextvars.copy_context().run, args=(drive,),
                              name="asap-session", daemon=True)
    driver.start()
    try:
        caller.serve(around or contextlib.nullcontext)
    except KeyboardInterrupt as exc:
        cancel.cancel(SIGTERM if isinstance(exc, Terminated) else CTRL_C)
        driver.join()
        raise
    driver.join()
    if failed:
        raise failed[0]


def _protocol(cfg: TuneConfig, llm: BaseChatModel, study: Study,
              server: EmbeddedServer | None) -> str:
    """The decision protocol. The embedded default model needs no probe (SmolLM2's chat
    template has no tool calls: it answers a tool request with text), so its server may still
    be loading; another model is probed once its server answers."""
    if server is not None and cfg.decide == AUTO and cfg.model is None:
        study.log_event("protocol", chosen=DEFAULT, reason="the embedded default model has no "
                        "tool-call template")
        return DEFAULT
    if server is not None:
        server.ready(wait=True)
    return pick_protocol(llm, cfg.decide, study)


def _ready(server: EmbeddedServer | None, study: Study, say: TuneCallback
           ) -> Callable[[], bool]:
    """Whether the LLM may be asked now: always for an endpoint that answered; the embedded
    server starts loading at the first question and answers once loaded, while trials go on
    (a failed start is said once, and the prior decides)."""
    if server is None:
        return lambda: True
    told = []

    def ready() -> bool:
        if server.ready():
            return True
        if server.error is not None and not told:
            told.append(True)
            study.log_event("llm_error", reason=f"the embedded server did not start: "
                            f"{server.error}"[:300])
            say.on_message(f"the embedded LLM server did not start ({server.error}); the prior "
                           "decides every round")
        return False
    return ready


def session_clock(ledger: Ledger, cfg: TuneConfig) -> Clock:
    """The session's clock. A resumed study stays on the clock it ran on and a virtual clock
    continues from the study's last time stamp, so its records read as one time line."""
    origin = None
    if ledger.has_study(cfg.study_name):
        study = ledger.open_study(cfg.study_name)
        ran = study.clocks()
        if ran and cfg.clock not in ran:
            raise ConfigError(f"study '{study.name}' ran on the {'/'.join(sorted(ran))} clock; "
                              f"resume it with --clock {min(ran)}, or name a new --study")
        origin = study.last_time()
    return make_clock(cfg.clock, origin)


def _again(ledger: Ledger, signum: int) -> None:
    """Send ``signum`` to this process again once the ledger is free (the main thread has left
    the ledger call it was interrupted in)."""
    ledger.wait_free()
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def _cancel_on_signals(ctx: TuneContext) -> Iterator[None]:
    """Ctrl-C and SIGTERM cancel the trials in flight at once, then interrupt as usual
    (SIGTERM as :class:`~asap.tools.types.Terminated`, a KeyboardInterrupt).

    Why a handler: the trial is awaited on a LangGraph worker thread, and the graph lets running
    branches finish before the KeyboardInterrupt reaches us; cancelling first makes that prompt.
    They are installed for the session only (main thread only) and the previous ones restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers live in the main thread only
        return

    def interrupt(signum: int, frame: object) -> None:
        term = signum == signal.SIGTERM
        ctx.trainer.cancel_all(SIGTERM if term else CTRL_C)
        ledger = ctx.study.ledger
        if ledger.held_here():
            # Raised inside a ledger call (an in-process trial's report), the interrupt could
            # strand the ledger's lock, and the trial could never be recorded: the signal comes
            # again once this thread has left the ledger.
            threading.Thread(target=_again, args=(ledger, signum), daemon=True).start()
            return
        raise Terminated if term else KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except KeyboardInterrupt as exc:
        # The signal can land between a trial's row and its job (or the graph may have dropped
        # a branch): wait for the cancelled workers to be recorded, then close any row left open.
        reason = SIGTERM if isinstance(exc, Terminated) else CTRL_C
        ctx.trainer.cancel_all(reason, wait_s=30)
        ctx.study.fail_running(reason)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
