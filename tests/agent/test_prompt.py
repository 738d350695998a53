"""Prompt files and the prefix-stability property that keeps the KV cache warm."""

import pytest

from asap.agent.prompt import PromptBuilder, PromptLog
from asap.agent.stats import tool_records
from asap.prompts import placeholders, render


def _rounds(ledger, toy_space, mode, n=6, context=24):
    study = ledger.create_study(f"p-{mode}", toy_space, metric="loss", direction="minimize",
                                workload="toy")
    builder = PromptBuilder(study, tools_text="- optuna_suggest\n- nevergrad_suggest", mode=mode)
    log, prompts = PromptLog(), []
    for r in range(1, n + 1):
        cfg = {"x": 1.0 / r, "lr": 0.1, "n_layers": 1 + r % 4, "optimizer": "adam"}
        if cfg["n_layers"] >= 3:
            cfg["units_l3"] = 16
        current = builder.round_text(r, [("optuna:tpe", cfg), ("nevergrad:NGOpt", cfg)])
        prompts.append(builder.prompt(log, current))
        tid = study.start_trial(cfg, tool="optuna:tpe" if r % 2 else "nevergrad:NGOpt")
        trial = study.finish_trial(tid, status="complete", metrics={"loss": 1.0 / r + 0.123456789})
        log = builder.close(log, current + builder.outcome_text("A", trial), context)
    return prompts


def test_each_prompt_starts_with_the_previous_one_byte_for_byte(ledger, toy_space):
    prompts = _rounds(ledger, toy_space, "stable")
    for before, after in zip(prompts, prompts[1:], strict=False):
        assert after.startswith(before) and len(after) > len(before)
    assert "loss=0.6235" in prompts[-1]  # fixed 4-significant-digit formatting


def test_the_log_is_compacted_in_rare_large_steps(ledger, toy_space):
    prompts = _rounds(ledger, toy_space, "stable", n=14, context=6)
    breaks = [i + 1 for i, (a, b) in enumerate(zip(prompts, prompts[1:], strict=False)) if not b.startswith(a)]
    # Round 7 closes the 7th round: the oldest 4 fold into one line; then every 3 rounds.
    assert breaks == [7, 10, 13]
    assert "## Rounds 1-4 (summarized): 7 trials finished" in prompts[7]
    assert "## Rounds 1-10 (summarized): 13 trials finished" in prompts[13]
    assert prompts[13].count("## Round ") == 4  # three carried rounds and the current one
    assert len(prompts[13]) < len(prompts[6])


def test_naive_mode_rewrites_its_header(ledger, toy_space):
    prompts = _rounds(ledger, toy_space, "naive")
    assert "# Status (round 2)" in prompts[1]
    assert not any(after.startswith(before) for before, after in zip(prompts, prompts[1:], strict=False))


def test_templates_and_code_agree():
    assert placeholders("system.txt") == {"workload", "direction", "metric", "space", "tools",
                                          "answer", "columns"}
    assert placeholders("compacted.txt") == {"rounds", "trials", "best"}
    assert placeholders("invalid.txt") == {"reason"}
    for name in ("answer_json.txt", "answer_tools.txt", "reminder_json.txt", "reminder_tools.txt"):
        assert placeholders(name) == set()
    assert placeholders("round.txt") == {"round", "best", "record", "proposals"}
    assert placeholders("outcome.txt") == {"decision", "result"}
    with pytest.raises(KeyError):
        render("outcome.txt", decision="A")  # strict: a missing variable is an error


def test_tool_records_count_improvements(ledger, toy_space):
    study = ledger.create_study("r", toy_space, metric="loss", direction="minimize")
    cfg = {"x": 1.0, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    for tool, loss in [("a", 3.0), ("b", 2.0), ("a", 2.5), ("b", 1.0), ("c", None)]:
        tid = study.start_trial(cfg, tool=tool)
        if loss is None:
            study.finish_trial(tid, status="failed", error="x")
        else:
            study.finish_trial(tid, status="complete", metrics={"loss": loss})
    rec = tool_records(study)
    assert (rec["a"].trials, rec["a"].improvements) == (2, 1)
    assert (rec["b"].trials, rec["b"].improvements) == (2, 2)
    assert (rec["c"].trials, rec["c"].improvements) == (1, 0)
