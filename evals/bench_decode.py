"""Decoded tokens and latency per decision, by decision format, on the same prompts in one run.

Builds the prompts of a real session (the panel's proposals on ``hpobench:australian``, a trial
trained per round) and asks the embedded SmolLM2 for each round's decision in each format:

- ``object``: the earlier schema, one closed JSON object per action
  (``{"action": "train", "choice": "A"}``);
- ``label schema``: one JSON string (``"A"``, ``"own"``, ``"stop"``) as ``response_format``, the
  portable form every OpenAI-compatible server with JSON schema takes;
- ``label grammar``: the same as a llama.cpp GBNF ``grammar`` (what asap sends a llama.cpp
  server).

    python evals/bench_decode.py --rounds 12

Not a test: latencies depend on the machine; token counts and choices do not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from typing import Any

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.table import Table

from asap.agent.llm.client import chat_model, json_model
from asap.agent.llm.decision import decision_schema, label_grammar
from asap.agent.llm.server import EmbeddedServer
from asap.agent.prior.ranking import rank
from asap.agent.prompt import PromptBuilder, PromptLog, label
from asap.graphs.context import tools_text
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.ledger.store import Ledger
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve


def object_schema(labels: list[str]) -> dict[str, Any]:
    """The object form asap used before the label (its "own" branch left out: the same
    rounds, the same choice)."""
    def closed(props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": list(props),
                "additionalProperties": False}
    return {"anyOf": [closed({"action": {"const": "train"}, "choice": {"enum": labels}}),
                      closed({"action": {"const": "stop"}})]}


def prompts(rounds: int) -> list[tuple[str, int]]:
    """Each round's prompt of a session that trains the prior's pick, with its label count."""
    wl = resolve("hpobench:australian")
    study = Ledger(tempfile.mkdtemp() + "/d.db").create_study(
        "d", wl.space, metric=wl.metric, direction=wl.direction, workload=wl.ref)
    tools, trainer = Portfolio(study), Trainer(study, wl, in_process=True)
    builder, log, out = PromptBuilder(study, tools_text()), PromptLog(), []
    for r in range(1, rounds + 1):
        offers, scores = rank(study, tools.panel_offers())
        out.append((builder.prompt(log, builder.round_text(r, offers, scores)), len(offers)))
        trial = trainer.run(offers[0][1], tool=offers[0][0])
        log = builder.close(log, builder.row(r, f"A ({offers[0][0]})", trial), 24)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    rounds = prompts(args.rounds)
    table = Table("format", "completion tokens (median)", "latency s (median)", "answers",
                  title=f"one decision per round, {args.rounds} rounds, SmolLM2 on llama.cpp")
    with EmbeddedServer(say=lambda m: None) as srv:
        llm = chat_model(srv.base_url, "default")
        formats = {
            "object": lambda labels: json_model(llm, object_schema(labels)),
            "label schema": lambda labels: json_model(llm, decision_schema(labels)),
            "label grammar": lambda labels: json_model(llm, {}, grammar=label_grammar(labels)),
        }
        names = list(formats)
        tokens: dict[str, list[int]] = {k: [] for k in names}
        seconds: dict[str, list[float]] = {k: [] for k in names}
        answers: dict[str, Counter[str]] = {k: Counter() for k in names}
        for i, (text, n) in enumerate(rounds):
            # Interleaved, the order rotating each round: every format meets a warm and a cold
            # cache as often as the others.
            for name in names[i % 3:] + names[:i % 3]:
                start = time.perf_counter()
                answer = formats[name]([label(j) for j in range(n)]).invoke([HumanMessage(text)])
                seconds[name].append(time.perf_counter() - start)
                tokens[name].append(answer.usage_metadata["output_tokens"])
                answers[name][" ".join(str(answer.content).split())] += 1
        for name in names:
            table.add_row(name, f"{statistics.median(tokens[name]):g}",
                          f"{statistics.median(seconds[name]):.2f}",
                          ", ".join(f"{a} x{k}" for a, k in answers[name].most_common(3)))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
