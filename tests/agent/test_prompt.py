"""Prompt files and the prefix-stability property that keeps the KV cache warm."""

import pytest

from asap.agent.prompt import PromptBuilder, PromptLog
from asap.agent.report.stats import tool_records
from asap.prompts import placeholders, render


def _rounds(ledger, toy_space, mode, n=6, context=24, with_blocks=False):
    study = ledger.create_study(f"p-{mode}", toy_space, metric="loss", direction="minimize",
                                workload="toy")
    builder = PromptBuilder(study, tools_text="- optuna_suggest\n- nevergrad_suggest", mode=mode)
    log, prompts, blocks = PromptLog(), [], []
    for r in range(1, n + 1):
        cfg = {"x": 1.0 / r, "lr": 0.1, "n_layers": 1 + r % 4, "optimizer": "adam"}
        if cfg["n_layers"] >= 3:
            cfg["units_l3"] = 16
        current = builder.round_text(r, [("optuna:tpe", cfg), ("nevergrad:NGOpt", cfg)])
        prompts.append(builder.prompt(log, current))
        blocks.append(current)
        tid = study.start_trial(cfg, tool="optuna:tpe" if r % 2 else "nevergrad:NGOpt")
        trial = study.finish_trial(tid, status="complete", metrics={"loss": 1.0 / r + 0.123456789})
        log = builder.close(log, builder.row(r, "A (optuna:tpe)", trial), context)
    return (prompts, blocks) if with_blocks else prompts


def test_each_prompt_extends_the_previous_one_minus_its_round_block(ledger, toy_space):
    prompts, blocks = _rounds(ledger, toy_space, "stable", with_blocks=True)
    for r, (before, block, after) in enumerate(zip(prompts, blocks, prompts[1:], strict=False),
                                               start=1):
        assert before.endswith(block)
        kept = before[: len(before) - len(block)]  # the static text and the log: byte for byte
        assert after.startswith(kept)
        new = after[len(kept):]  # one line for the closed round, then the next round's block
        assert new.startswith(f"Round {r}: A (tpe) ") and new.count("\n") == 1 + blocks[r].count("\n")
    assert "trial 1: 0.623" in prompts[-1]  # fixed 3-significant-digit formatting


def test_the_log_is_compacted_in_rare_large_steps(ledger, toy_space):
    prompts, blocks = _rounds(ledger, toy_space, "stable", n=14, context=6, with_blocks=True)
    kept = [p[: len(p) - len(b)] for p, b in zip(prompts, blocks, strict=True)]
    breaks = [i + 1 for i, (a, b) in enumerate(zip(kept, prompts[1:], strict=False)) if not b.startswith(a)]
    # Round 7 closes the 7th round: the oldest 4 leave; then every 3 rounds.
    assert breaks == [7, 10, 13]
    for i in breaks:  # only deletions: the rows left are the earlier prompt's, in order
        before, after = _log_rows(kept[i - 1]), _log_rows(kept[i])
        assert _is_subsequence(after[:-1], before) and after[-1].startswith(f"Round {i}: ")
    # Losses fall every round here, so the best of the rows left out is the newest of them.
    assert [r.split(":")[0] for r in _log_rows(kept[7])] == [f"Round {r}" for r in (4, 5, 6, 7)]
    assert [r.split(":")[0] for r in _log_rows(kept[13])] == [
        f"Round {r}" for r in (10, 11, 12, 13)]
    assert prompts[13].count("## Round ") == 1  # and the current round's block
    assert len(prompts[13]) < len(prompts[6])


def test_compaction_keeps_the_best_trial_it_leaves_out(ledger, toy_space):
    study = ledger.create_study("best", toy_space, metric="loss", direction="minimize")
    builder = PromptBuilder(study, tools_text="- tool")
    log = PromptLog()
    for r, loss in enumerate((5.0, 0.5, 4.0, None, 3.0, 6.0, 7.0), start=1):
        tid = study.start_trial({"x": r / 10, "lr": 0.1, "n_layers": 1, "optimizer": "adam"},
                                tool="optuna:tpe")
        trial = study.finish_trial(tid, status="failed", error="boom") if loss is None else \
            study.finish_trial(tid, status="complete", metrics={"loss": loss})
        log = builder.close(log, builder.row(r, "A (optuna:tpe)", trial), 6)
    # Rounds 1-4 leave the log; round 2's trial (loss 0.5) is the best of them and stays.
    assert [row.split(":")[0] for row in log.rows] == [
        "Round 2", "Round 5", "Round 6", "Round 7"]
    assert log.rows[0].endswith("-> trial 1: 0.5\n") and log.compacted == 3
    assert log.rounds == 7
    # Nothing finished among the rows left out: none is kept.
    empty = PromptLog(tuple(f"Round {r}: A (tpe) x -> trial {r} failed (boom)\n"
                            for r in range(40, 47)))
    assert builder.compact(empty, 3).rows == empty.rows[-3:]


def _log_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Round ")]


def _is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def test_a_closed_round_is_one_bounded_line(ledger, toy_space):
    study = ledger.create_study("rows", toy_space, metric="loss", direction="minimize")
    builder = PromptBuilder(study, tools_text="- tool")
    cfg = {"x": 0.5, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    ok = study.finish_trial(study.start_trial(cfg, tool="optuna:tpe"), status="complete",
                            metrics={"loss": 0.25})
    assert builder.row(3, "B (optuna:tpe)", ok) == (
        "Round 3: B (tpe) 0.5 0.1 1 - adam - -> trial 0: 0.25\n")  # short names in the prompt
    bad = study.finish_trial(study.start_trial({**cfg, "x": 0.6}, tool="optuna:tpe"),
                             status="failed", error="Traceback\n" + "x" * 50_000)
    line = builder.row(4, "A (optuna:tpe)", bad)
    assert line.count("\n") == 1 and len(line) < 250 and line.rstrip().endswith("...)")


def test_naive_mode_rewrites_its_header(ledger, toy_space):
    prompts = _rounds(ledger, toy_space, "naive")
    assert "# Status (round 2)" in prompts[1]
    assert not any(after.startswith(before) for before, after in zip(prompts, prompts[1:], strict=False))


def test_templates_and_code_agree():
    assert placeholders("system.txt") == {"workload", "direction", "metric", "space", "tools",
                                          "answer", "columns", "parallel", "proposal_help"}
    assert placeholders("invalid.txt") == {"reason"}
    for name in ("answer_json.txt", "answer_tools.txt", "reminder_json.txt", "reminder_tools.txt",
                 "own.txt", "proposals_brief.txt", "proposals_full.txt"):
        assert placeholders(name) == set()
    assert placeholders("round.txt") == {"round", "best", "record", "proposals"}
    assert placeholders("round_brief.txt") == {"round", "best", "proposals"}
    assert placeholders("plan.txt") == {"rounds"}
    assert placeholders("outcome.txt") == {"round", "decision", "config", "result"}
    assert placeholders("landed.txt") == {"result"}
    assert placeholders("parallel.txt") == {"workers"}
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


def test_the_compacted_prefix_is_known_while_the_closing_trial_trains(ledger, toy_space):
    """What a warm-up call sends before a compaction: the next prompt's prefix, byte for byte,
    computed before the round that triggers the compaction has its result."""
    study = ledger.create_study("warm", toy_space, metric="loss", direction="minimize",
                                workload="toy")
    builder = PromptBuilder(study, tools_text="- tool")
    log, warmed = PromptLog(), 0
    for r in range(1, 15):
        cfg = {"x": 1.0 / r, "lr": 0.1, "n_layers": 1, "optimizer": "adam"}
        tid = study.start_trial(cfg, tool="optuna:tpe")
        prefix = builder.next_prefix(log, 6)  # the trial is running: no result yet
        trial = study.finish_trial(tid, status="complete", metrics={"loss": 1.0 / r})
        after = builder.close(log, builder.row(r, "A (optuna:tpe)", trial), 6)
        nxt = builder.prompt(after, builder.round_text(r + 1, [("optuna:tpe", cfg)]))
        if after.compacted != log.compacted:
            assert prefix is not None and nxt.startswith(prefix) and "Round 1:" not in prefix
            warmed += 1
        else:
            assert prefix is None
        log = after
    assert warmed == 3
