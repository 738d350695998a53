"""The tuning graph as a whole: the prompt's compaction and warm-ups, plans, the self-tuning
node, extending a study, checkpointing inside a parent, and the LLM's record. The chat model is
scripted; training, tools and the ledger are real.
"""

from __future__ import annotations

import json

import httpx
import openai
from fakes import ScriptedModel, australian, run_graph
from graphrun import GOOD, copy_a, events, run
from langchain_core.messages import AIMessage

from asap.agent.selftune import Bounds


def test_a_prompt_past_the_context_window_compacts_the_log_and_goes_on(tmp_path):
    limit = {}

    def script(messages, kwargs):
        limit.setdefault("chars", len(messages[0].content) + 350)  # ~5 closed rounds fit
        if len(messages[0].content) > limit["chars"]:
            request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
            raise openai.BadRequestError("request (4286 tokens) exceeds the available context size",
                                         response=httpx.Response(400, request=request), body=None)
        return copy_a(messages, kwargs)
    model = ScriptedModel(script)
    study, state, _ = run(tmp_path, model, trials=10)
    shrinks = events(study, "context_shrink")
    assert shrinks and not study.events("llm_error") and state["fallbacks"] == 0
    assert len(study.trials(status="complete")) == 10
    last = model.calls[-1][0][0].content
    assert "Round 9:" in last and "Round 2:" not in last  # old rows left the log
    assert [k.get("tool_choice") for _, k in model.calls[-2:]] == ["required", "required"]


def test_one_decision_covers_plan_rounds_and_commits_to_the_tool_it_chose(tmp_path):
    picks = iter("BA")
    model = ScriptedModel(lambda m, k: AIMessage(json.dumps(
        {"action": "train", "choice": next(picks)})))
    study, ctx = australian(tmp_path, model, trials=6,
                            bounds=Bounds(plan_min=3, plan_max=3))
    run_graph(ctx, plan=3)
    assert len(model.calls) == 2  # rounds 1 and 4; the plan decides 2, 3, 5 and 6
    assert "(plan: 3 rounds)" in model.calls[0][0][0].content
    decisions = events(study, "decision")
    assert [d["by"] for d in decisions] == ["llm", "plan", "plan"] * 2
    trials = study.trials()
    # "B" commits to B's tool for the plan's rounds; "A" follows the prior's order.
    b_tool = decisions[0]["offers"][1][0]
    assert [t.tool for t in trials[:3]] == [b_tool] * 3
    assert all(d["choice"].startswith("A ") for d in decisions[4:])
    assert len({json.dumps(t.config, sort_keys=True) for t in trials}) == 6


def test_a_compacted_prefix_is_warmed_while_the_trial_trains(tmp_path):
    """Speculation off, the log about to compact when the running trial's round closes: a
    one-token call sends the next prompt's prefix now, while the trial trains; the real call
    after the trial starts with exactly that prefix."""
    from asap.agent.prompt import PromptLog
    from asap.graphs.speculative import _warm
    from asap.graphs.state import Pending
    model = ScriptedModel(lambda m, k: AIMessage(content='"A"'))
    study, ctx = australian(tmp_path, model, trials=9, time_scale=100.0)  # trials of minutes
    state = ctx.initial_state(context=4)
    rows = []
    for r, width in enumerate((16, 25, 40, 64), start=1):  # four closed rounds
        done = study.finish_trial(study.start_trial({**GOOD, "width": width}, tool="optuna:tpe"),
                                  status="complete", metrics={"val_acc": 0.8})
        rows.append(ctx.builder.row(r, "A (optuna:tpe)", done))
    rows = tuple(rows)
    job = ctx.trainer.start(GOOD, tool="optuna:tpe")
    ctx.flights.start(job)
    try:
        state = {**state, "trial_id": job.trial_id, "round": 5, "decided_by": "llm",
                 "log": PromptLog(rows), "running": {job.trial_id: Pending(5, "A (optuna:tpe)")}}
        _warm(ctx, state, state["knobs"])
        assert not job.done()  # it was sent while the trial trained
    finally:
        job.cancel("test over")
        job.wait(60)
    (messages, kwargs), = model.warmups
    assert kwargs["max_tokens"] == 1 and "Round 2:" not in messages[0].content
    assert "Round 1:" in messages[0].content  # the best (first of equals) of the rows left out
    after = ctx.builder.close(state["log"], ctx.builder.row(5, "A (optuna:tpe)", job.wait()), 4)
    assert ctx.builder.prompt(after, "## Round 6 ...").startswith(messages[0].content)
    warm, = [c for c in study.timings("llm_call") if c["detail"].get("warmup")]
    assert study.events("warmup")[0]["detail"] == {"round": 6, "compaction": True}
    _warm(ctx, {**state, "log": PromptLog(rows[:2])}, state["knobs"])  # no compaction due,
    assert len(model.warmups) == 1  # the last call was the LLM's own: nothing to warm


def test_the_selftune_node_runs_beside_training_and_moves_the_knobs(tmp_path):
    # Any decision counts as slower than training (plan_ratio ~0): one decision covers more
    # rounds, a move that depends on no clock; the state carries the knob on.
    study, state, _ = run(tmp_path, ScriptedModel(copy_a), trials=7, time_scale=0.02,
                          speculation="threshold", selftune_every=3,
                          bounds=Bounds(plan_ratio=1e-12))
    tuned = events(study, "selftune")
    assert tuned and tuned[0]["before"]["plan"] == 1
    assert state["knobs"].plan == tuned[-1]["after"]["plan"] > 1
    starts = sorted(t.started_at for t in study.trials())
    for row in study.timings("selftune"):  # off the critical path: its own node, after its
        # round's trial started and done before the next trial could start
        before = [s for s in starts if s <= row["start"]]
        later = [s for s in starts if s > row["start"]]
        assert before and (not later or row["end"] <= later[0])


def test_the_drawn_graph_shows_self_tuning_before_the_parallel_branches():
    from asap.graphs.tuning import graph
    drawn = graph.get_graph()
    edges = {(e.source, e.target) for e in drawn.edges}
    assert {("selftune", "await_train"), ("selftune", "speculate")} <= edges
    assert ("dispatch", "selftune") in edges  # taken when a pass is due, else straight on


def test_the_first_selftune_pass_comes_as_soon_as_the_ledger_can_be_read(tmp_path):
    """The knobs start as guesses: the first pass runs once 3 decisions and 3 trials are in,
    not at the N-th trial; later passes keep to every N."""
    study, state, _ = run(tmp_path, ScriptedModel(copy_a), trials=8, time_scale=0.02,
                          speculation="threshold", selftune_every=1000,
                          bounds=Bounds(plan_ratio=1e-12))
    passes = study.timings("selftune")
    assert len(passes) == 1 and state["knobs"].plan > 1
    assert events(study, "selftune")[0]["after"]["plan"] == state["knobs"].plan


_ASSUMED: set[str] = set()  # configs some prompt has already shown a result for
def test_extending_a_study_trains_new_configurations(tmp_path):
    study, ctx = australian(tmp_path, ScriptedModel(copy_a), protocol="tools", trials=2)
    run_graph(ctx)
    # "--trials 4" on the same study: a new session, new tools, the same seed.
    from dataclasses import replace

    from asap.tools.hpo.portfolio import Portfolio
    more = replace(ctx, portfolio=Portfolio(study, seed=0),
                   cfg=ctx.cfg.model_copy(update={"trials": 4}))
    run_graph(more)
    assert len(study.trials()) == 4
    assert len({json.dumps(t.config) for t in study.trials()}) == 4
    assert not study.events("repeat_avoided")  # the tools continued instead of replaying


def test_the_tuning_graph_is_not_checkpointed_inside_a_checkpointed_parent(tmp_path):
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    class Outer(TypedDict, total=False):
        trials: int

    study, ctx = australian(tmp_path, ScriptedModel(copy_a), protocol="tools", trials=2)

    def tune_node(state: Outer) -> Outer:
        run_graph(ctx)
        return {"trials": len(study.trials())}
    g = StateGraph(Outer)
    g.add_node("tune", tune_node)
    g.add_edge(START, "tune")
    g.add_edge("tune", END)
    saver = InMemorySaver()
    out = g.compile(checkpointer=saver).invoke({}, {"configurable": {"thread_id": "t"}})
    assert out["trials"] == 2
    namespaces = {c.config["configurable"].get("checkpoint_ns", "") for c in saver.list(None)}
    assert namespaces == {""}  # only the parent's checkpoints: no tuning-graph state stored


def test_the_llms_departures_from_the_prior_are_counted_and_reported(tmp_path, capsys):
    """An LLM that picks B: its decisions on scored rounds are departures, counted in the
    summary (and its JSON) and in ``asap report`` as one sentence."""
    from asap.agent.report.stats import summarize
    from asap.cli.main import main
    from asap.cli.render import print_summary
    from asap.graphs.api import TaskResult
    model = ScriptedModel(lambda m, k: AIMessage(content=json.dumps(
        {"action": "train", "choice": "B"})))
    study, _, _ = run(tmp_path, model, protocol="json", trials=7)
    scored = [d for d in events(study, "decision") if d["scores"][0] is not None]
    assert scored and all(d["by"] == "llm" and d["choice"].startswith("B ") for d in scored)
    summary = summarize(study)
    record = summary["llm_record"]
    assert record["decisions"] == record["departed"] == len(scored)
    assert 0 <= record["improved"] <= record["paid"] + record["departed"]
    assert TaskResult.from_summary(summary).llm_record == record
    from rich.console import Console
    print_summary(summary, Console(width=200))
    sentence = f"the LLM departed from the prior in {len(scored)} of {len(scored)} decisions ("
    assert sentence in capsys.readouterr().out
    assert main(["report", study.name, "--db", str(study.ledger.path),
                 "--out", str(tmp_path / "t.png")]) == 0
    assert sentence in capsys.readouterr().out


def test_the_llm_is_not_asked_before_the_prior_has_anything_to_score(tmp_path):
    """llm_after=3 (a session's default): the first three rounds are the tools' start-up
    samples, which nothing yet tells apart; the fallback picks them and no call is made."""
    model = ScriptedModel(lambda m, k: AIMessage(content=json.dumps(
        {"action": "train", "choice": "A"})))
    study, _, _ = run(tmp_path, model, protocol="json", trials=5, llm_after=3)
    assert [d["by"] for d in events(study, "decision")] == ["prior"] * 3 + ["llm"] * 2
    assert len(model.calls) == 2 and len(study.timings("llm_call")) == 2
    assert "Round 4" in model.calls[0][0][-1].content  # the first call: after three results


def test_the_session_tells_the_displays_what_it_waits_on(tmp_path):
    """Each round: the tools first, then the LLM when it is asked, then training."""
    seen: list[str] = []
    model = ScriptedModel(copy_a)
    study, ctx = australian(tmp_path, model, protocol="tools", trials=5,
                            on_phase=seen.append)
    run_graph(ctx)
    assert seen[0] == "tools" and {"tools", "llm", "training"} <= set(seen)
    first_llm = seen.index("llm")
    assert seen[first_llm - 1] == "tools" and "training" in seen[first_llm:]
