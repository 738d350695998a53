"""What the terminal shows: the live progress of a session, trial tables, summaries, reports.

The library reports through callbacks and returns numbers; this module alone turns them into
rich output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from asap.agent.record import LLMRecord
from asap.agent.report.stats import cached_share, cores_line, pct
from asap.evals.grid import GridCallback
from asap.evals.methods import Cell
from asap.graphs.callbacks import TuneCallback
from asap.tools.hpo.space import format_value
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.types import Trial, printable


def bar(console: Console, label: str) -> Progress:
    """The one progress bar of the CLI: label, bar, n/total, elapsed, and an info field."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console)


class RichProgress(TuneCallback):
    """The live display of one session: the bar (trials done, best value, last tool, LLM
    latency, cache) and below it each running trial (number, worker, time on the session's
    clock, configuration) or, between trials, that the agent is deciding. Refreshed 4 times a
    second: a long trial shows its time growing instead of a frozen bar."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: Any = None
        self.live: Live | None = None
        self.phase = "tools"

    def on_phase(self, study: Study, phase: str) -> None:
        self.phase = phase

    def on_message(self, text: str) -> None:
        self.console.print(text)

    def on_session_start(self, study: Study, total: int, protocol: str | None) -> None:
        self.progress = bar(self.console, "tuning")
        self.task = self.progress.add_task("tuning", total=total, info=f"{protocol} protocol",
                                           completed=len(study.finished_ids()))
        self.live = Live(self.view(study), console=self.console, refresh_per_second=4)
        self.live.start()

    def view(self, study: Study) -> Group:
        """What the display shows (the bar and the running trials), rendered at each refresh."""
        return Group(self.progress, Running(study, lambda: self.phase))

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=len(study.finished_ids()),
                                 info=live_info(study, tool))

    def on_session_end(self, study: Study | None, interrupted: bool) -> None:
        if self.live is not None:
            self.live.update(self.progress, refresh=True)  # the last frame: the bar alone
            self.live.stop()
            if not self.console.is_interactive:  # as rich's Progress: end the frame's line
                self.console.print()
            self.live = self.progress = None


# What the session waits on, as the live display says it.
WAITING = {"tools": "the tools (proposals, the prior's ranking)",
           "llm": "the LLM (a decision on the critical path)",
           "training": "training (the LLM may decide the next round meanwhile)"}


class Running:
    """The trials in flight, read from the ledger whenever the display refreshes."""

    def __init__(self, study: Study, phase: Callable[[], str] = lambda: "tools") -> None:
        self.study, self.phase = study, phase

    def __rich__(self) -> Table | Text:
        running = self.study.trials(status="running")
        waiting = WAITING.get(self.phase(), self.phase())
        if not running:
            return Text(f"deciding the next trial: {waiting}", style="dim")
        now = self.study.clock.now()
        table = Table("trial", "worker", "training for", "configuration", box=None,
                      title=f"waiting on {waiting}", title_justify="left",
                      title_style="dim", header_style="dim")
        for t in running:
            config = ", ".join(f"{k}={format_value(v)}" for k, v in t.config.items())
            table.add_row(f"#{t.number}", str(t.meta.get("worker", 0)),
                          f"{max(0.0, now - t.started_at):.0f} s", safe(config)[:120])
        return table


class GridProgress(GridCallback):
    """A progress bar over an eval grid's cells."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = bar(console, "eval")
        self.task: Any = None

    def on_message(self, text: str) -> None:
        self.console.print(text)

    def on_cell(self, done: int, total: int, cell: Cell | None) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("grid", total=total, info="")
        info = f"{cell.task} {cell.method} seed {cell.seed}" if cell else "done"
        self.progress.update(self.task, completed=done, info=info)
        if cell is None:
            self.progress.stop()


def live_info(study: Study, tool: str) -> str:
    """Best value, last tool, last LLM latency and the cache reuse so far."""
    best, calls = study.best(), study.timings("llm_call")
    parts = [f"best {best.value:.4f}" if best else "no complete trial", f"last {tool}"]
    if (running := len(study.trials(status="running"))) > 1:  # N workers
        parts.append(f"{running} running")
    if calls:
        parts.append(f"llm {calls[-1]['duration']:.1f}s")
        share = cached_share(calls)
        parts.append(f"cache {share:.0%}" if share is not None else "cache unknown")
    return " | ".join(parts)


def safe(text: str) -> str:
    """Stored text (a workload's error, a tool name, a choice) for a rich f-string: its control
    characters (terminal escapes: clear screen, window title) shown as ``?`` and its square
    brackets escaped, so it prints as written and never as markup (``[/bold]`` crashed show)."""
    return escape(printable(text))


def trials_table(study: Study) -> Table:
    table = Table(title=f"study {safe(study.name)}: {study.direction} {safe(study.metric)}")
    for col in ("#", "tool", "status", safe(study.metric), "seconds", "config / error"):
        table.add_column(col)
    for t in study.trials():
        value = f"{t.value:.4f}" if t.value is not None else "-"
        table.add_row(str(t.number), safe(t.tool), t.status, value,
                      f"{t.duration:.1f}" if t.duration else "-",
                      safe(t.error or study.space.format(t.evaluated)))
    return table


def studies_table(ledger: Ledger, db: str) -> Table:
    """Every study of a ledger: workload, trials, best value, last activity (local time)."""
    table = Table("study", "workload", "trials", "best", "last activity", title=f"studies in {db}")
    for name in ledger.study_names():
        study = ledger.open_study(name)
        trials, best = study.trials(), study.best()
        last = max([t.ended_at or t.started_at or 0 for t in trials] or [0])
        table.add_row(name, study.workload or "-", str(len(trials)),
                      "-" if best is None else f"{best.value:.6g} ({study.direction[:3]} "
                      f"{study.metric})",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(last)) if last else "-")
    return table


def threads_table(threads: list[dict[str, Any]], db: str) -> Table:
    table = Table("thread", "last activity", "messages", "study", "first request",
                  title=f"chats in {db}")
    for t in threads:
        table.add_row(t["thread"], t["last"], str(t["messages"]), t["study"] or "-", t["first"])
    return table


def decomposition_table(study: Study, d: dict[str, Any]) -> Table:
    """The wall-clock split (its parts add up to the wall-clock), then the LLM's seconds
    by kind of call, each labelled by what it measures."""
    wall = d["wall_s"] or 1e-9
    table = Table("", "seconds", "share", title=f"study {study.name}: wall-clock decomposition")
    for key, name in (("train_s", "training (a trial running)"),
                      ("exposed_llm_s", "LLM, no trial running (exposed)"),
                      ("tools_s", "tools, nothing else running"),
                      ("startup_s", "start-up (before the first trial)"),
                      ("other_s", "other (ledger, waiting)")):
        table.add_row(name, f"{d[key]:.1f}", pct(d[key] / wall, ".1%"))
    table.add_row("wall-clock (the sum)", f"{d['wall_s']:.1f}", "100%", end_section=True)
    for key, name in (("llm_s", "LLM calls on the critical path"),
                      ("speculative_llm_s", "LLM calls, speculative"),
                      ("hidden_llm_s", "LLM time overlapping training (hidden)"),
                      ("wasted_s", "speculative LLM time discarded (wasted)")):
        table.add_row(name, f"{d[key]:.1f}", "")
    table.add_row("accept rate", pct(d["accept_rate"], ".1%"), "")
    table.add_row("cached-token share", pct(d["cached_share"], ".1%"), "")
    return table


def calls_table(study: Study, d: dict[str, Any]) -> Table:
    """The LLM's calls by kind: latency, prompt length, cached share, tokens decoded."""
    table = Table("kind", "calls", "median s", "p90 s", "prompt tokens (median)", "cached",
                  "completion tokens (median)", title=f"study {study.name}: LLM calls by kind")
    for kind, k in d["calls"].items():
        table.add_row(kind, str(k["calls"]), f"{k['median_s']:.2f}", f"{k['p90_s']:.2f}",
                      "-" if k["prompt_tokens"] is None else f"{k['prompt_tokens']:.0f}",
                      pct(k["cached_share"], ".1%"),
                      "-" if k["completion_tokens"] is None else f"{k['completion_tokens']:.0f}")
    return table


SATURATED = 3  # trials at exactly the best value: the metric no longer tells them apart


def saturated(ties: int, metric: str, best: float) -> str:
    """Why many trials at the best value matter: the one named is only the first of them."""
    return (f"  {ties} trials tie at the best {safe(metric)} ({best:.6g}): the metric has "
            "saturated on this validation data, and the trial named is the first of them (as "
            "Optuna's best_trial). A finer metric (log-loss) or more validation data would "
            "tell them apart.")


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The end-of-session report: best config, per-tool record, LLM numbers, time split."""
    s = summary
    if s["best_value"] is None:
        console.print(f"[bold]{s['study']}[/]: no complete trial ({s['trials']} trials)")
    else:
        console.print(f"[bold]{s['study']}[/]: best {safe(s['metric'])} = {s['best_value']:.6g} "
                      f"(trial {s['best_trial']}, {safe(s['best_tool'])})\n  config "
                      + safe(", ".join(f"{k}={format_value(v)}"
                                       for k, v in s["best_config"].items())),
                      highlight=False)
        if s.get("tied_best", 0) >= SATURATED:
            console.print(saturated(s["tied_best"], s["metric"], s["best_value"]),
                          highlight=False)
    tools = Table("tool", "trials", "improved the best", title="per-tool record")
    for tool, rec in s["per_tool"].items():
        tools.add_row(tool, str(rec["trials"]), str(rec["improvements"]))
    console.print(tools)
    t = s["time"]
    split = Table("wall-clock", "seconds", "share", title="time split" + (
        " (virtual clock: simulated seconds)" if s.get("clock") == "virtual" else ""))
    for key, name in (("train_s", "training (a trial running)"),
                      ("exposed_llm_s", "LLM, no trial running (exposed)"),
                      ("tools_s", "tools, nothing else running"),
                      ("startup_s", "start-up (before the first trial)"), ("other_s", "other")):
        share = f"{t[key] / t['wall_s']:.0%}" if t["wall_s"] else "-"
        split.add_row(name, f"{t[key]:.1f}", share)
    split.add_row("wall-clock (the sum)", f"{t['wall_s']:.1f}", "", end_section=True)
    split.add_row("LLM overlapping training (hidden)", f"{t['hidden_llm_s']:.1f}", "")
    split.add_row("LLM calls, speculative", f"{t['speculative_llm_s']:.1f}", "")
    console.print(split)
    if (idle := cores_line(s.get("cores"), "--workers ")) is not None:
        console.print(idle, highlight=False)
    median = f"{s['llm_median_s']:.2f}s" if s["llm_median_s"] is not None else "-"
    cached = f"{s['cached_share']:.0%}" if s["cached_share"] is not None else "unknown"
    failed = f", {s['llm_failed_calls']} failed" if s.get("llm_failed_calls") else ""
    if not s["llm_calls"] and s["protocol"] is None:
        console.print("LLM: off (the panel and the prior decided every round)")
        return
    console.print(f"LLM: {s['llm_calls']} calls{failed} ({s['protocol'] or 'no'} protocol), median "
                  f"{median}, prompt tokens from cache {cached}; guard: {s['retries']} retries, "
                  f"{s['reminders']} reminders, {s['fallbacks']} fallbacks, "
                  f"{s['llm_errors']} LLM errors")
    if (record := s.get("llm_record")) is not None:
        console.print(LLMRecord(**record).sentence())
    if (priced := s.get("llm_asked")) is not None:
        console.print(f"asked the LLM: {'yes' if priced['asked'] else 'no'}, {safe(priced['why'])}"
                      f" ({priced['rounds_llm']} rounds the LLM decided, "
                      f"{priced['rounds_prior']} the prior)", highlight=False)
