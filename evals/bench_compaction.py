"""The first call after a compaction, by compaction style, on the same log in one run.

Builds the log of a real session (the panel's proposals on ``hpobench:australian``, the prior's
pick trained each round), then, on the embedded SmolLM2, asks the whole log and right after it
the log compacted to its newest ``--keep`` rounds, in two styles, interleaved:

- ``summary line``: the rounds left out become one new line (what asap wrote before): everything
  after that line is new to the server's cache and recomputed;
- ``rows deleted``: the rounds left out are deleted, the best of them kept (what asap writes
  now); every row kept is a piece of the cached prompt, which llama.cpp shifts into its new
  place (``n_cache_reuse``).

The round's block is the same in all three prompts, so what is recomputed is the compaction's
cost alone (a real call also reads its new block and row, ~150 tokens).

    python evals/bench_compaction.py --rounds 32 --keep 12

Not a test: latencies depend on the machine; token counts do not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.table import Table

from asap.agent.llm.client import chat_model, json_model
from asap.agent.llm.decision import label_grammar
from asap.agent.llm.server import EmbeddedServer
from asap.agent.prior.ranking import rank
from asap.agent.prompt import PromptBuilder, PromptLog, fmt, fmt_config, short
from asap.graphs.context import tools_text
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.ledger.store import Ledger
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve


def session(rounds: int, keep: int) -> tuple[str, dict[str, str]]:
    """The whole prompt after ``rounds`` rounds, and the same prompt compacted in each style."""
    wl = resolve("hpobench:australian")
    study = Ledger(tempfile.mkdtemp() + "/c.db").create_study(
        "c", wl.space, metric=wl.metric, direction=wl.direction, workload=wl.ref)
    tools, trainer = Portfolio(study), Trainer(study, wl, in_process=True)
    builder, log = PromptBuilder(study, tools_text()), PromptLog()
    for r in range(1, rounds + 1):
        offers, _ = rank(study, tools.panel_offers())
        trial = trainer.run(offers[0][1], tool=offers[0][0])
        tools.sync()
        log = builder.close(log, builder.row(r, f"A ({offers[0][0]})", trial), rounds + 1)
    offers, scores = rank(study, tools.panel_offers())
    block = builder.round_text(rounds + 1, offers, scores)
    folded = rounds - keep
    best = min((t for t in study.trials()[:folded] if t.value is not None),
               key=lambda t: t.value if study.direction == "minimize" else -t.value)
    summary = (f"## Rounds 1-{folded} (summarized): {folded} trials finished; best "
               f"{fmt(best.value)} (trial {best.number}, {short(best.tool)}: "
               f"{fmt_config(best.config, study.space.names)})\n")
    return builder.prompt(log, block), {
        "summary line": builder.prompt(PromptLog((summary, *log.rows[-keep:]), folded), block),
        "rows deleted": builder.prompt(builder.compact(log, keep), block)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=32)
    ap.add_argument("--keep", type=int, default=12)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    whole, styles = session(args.rounds, args.keep)
    names = list(styles)
    seconds: dict[str, list[float]] = {k: [] for k in names}
    tokens: dict[str, tuple[int, int]] = {}
    with EmbeddedServer(say=lambda m: None) as srv:
        llm = json_model(chat_model(srv.base_url, "default"), {},
                         grammar=label_grammar(["A", "B", "C", "D"]))
        for i in range(args.reps):
            for name in names[i % 2:] + names[:i % 2]:  # the order alternates each repetition
                llm.invoke([HumanMessage(whole)])  # the server holds the whole log
                start = time.perf_counter()
                answer = llm.invoke([HumanMessage(styles[name])])
                seconds[name].append(time.perf_counter() - start)
                usage = answer.usage_metadata
                tokens[name] = (usage["input_tokens"],
                                usage.get("input_token_details", {}).get("cache_read", 0))
    base = statistics.median(seconds["rows deleted"])
    table = Table("compaction", "prompt tokens", "from the cache", "recomputed",
                  "first call s (median)", "vs rows deleted",
                  title=f"{args.rounds} rounds compacted to {args.keep} (+ the best), "
                        f"{args.reps} repetitions, SmolLM2 on llama.cpp")
    for name in names:
        prompt, cached = tokens[name]
        median = statistics.median(seconds[name])
        table.add_row(name, str(prompt), str(cached), str(prompt - cached), f"{median:.2f}",
                      f"{median / base:.1f}x")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
