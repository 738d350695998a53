"""The tuning graph driven by a scripted fake chat model; assertions on what the ledger holds.

Training is real (the HPOBench table for australian: milliseconds per trial), the tools are real
Optuna / Nevergrad; only the chat model is scripted.
"""

from __future__ import annotations

import json
import re
import threading

import httpx
import openai
import pytest
from fakes import ScriptedModel, australian, call, proposals, rounds, run_graph
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from asap.agent.fit import off_centre
from asap.agent.protocols import pick_protocol
from asap.agent.selftune import Bounds

GOOD = {"alpha": 1e-4, "batch_size": 32, "depth": 2, "learning_rate_init": 1e-3, "width": 128}


def run(tmp_path, model, *, protocol="tools", tau=0.05, depth=1, **settings):
    """A session on the australian table; ``time_scale`` > 0 makes trials take (simulated) time.

    Returns the study, the final state and the run context."""
    study, ctx = australian(tmp_path, model, protocol=protocol, **settings)
    return study, run_graph(ctx, tau=tau, depth=depth), ctx


def events(study, kind):
    return [e["detail"] for e in study.events(kind)]


def copy_a(messages, kwargs):
    tool, cfg = proposals(messages)["A"]
    return call("train_on_gpu", {"params": cfg, "tool": tool})


def test_valid_tool_calls_train_the_copied_proposal(tmp_path):
    model = ScriptedModel(copy_a)
    study, state, _ = run(tmp_path, model)
    trials = study.trials()
    assert [t.status for t in trials] == ["complete"] * 3
    assert all(t.tool == "optuna:tpe" for t in trials)  # proposal A is TPE's, attributed to it
    assert state["retries"] == 0 and state["fallbacks"] == 0
    assert len(study.timings("llm_call")) == 3
    assert all(c["detail"]["protocol"] == "tools" for c in study.timings("llm_call"))
    assert model.calls[0][1]["tool_choice"] == "required"
    assert set(model.calls[0][1]["tools"]) == {"optuna_suggest", "nevergrad_suggest", "llm_propose",
                                               "train_on_gpu", "stop"}


def test_malformed_arguments_go_back_as_a_tool_message(tmp_path):
    def script(messages, kwargs):
        if isinstance(messages[-1], HumanMessage):  # first answer of each round is malformed
            return AIMessage(content="", invalid_tool_calls=[
                {"name": "train_on_gpu", "args": '{"params": {', "id": "bad", "error": "JSON"}])
        return call("train_on_gpu", {"params": GOOD}, 1)
    model = ScriptedModel(script)
    study, state, _ = run(tmp_path, model, trials=2)
    assert len(study.trials(status="complete")) == 2 and state["retries"] == 2
    retry_msgs = model.calls[1][0]
    assert isinstance(retry_msgs[-2], AIMessage)  # the answer, then one ToolMessage per call id
    tm = retry_msgs[-1]
    assert isinstance(tm, ToolMessage) and tm.status == "error" and tm.tool_call_id == "bad"
    assert "not valid JSON" in tm.content
    assert [e["reason"] for e in events(study, "guard_retry")][0].startswith("the arguments of")
    first, second = study.trials()
    assert first.tool == "llm" and first.config == GOOD
    assert second.config != GOOD and len(events(study, "repeat_avoided")) == 1  # never twice


def test_unknown_tool_is_named_and_retried(tmp_path):
    def script(messages, kwargs):
        if isinstance(messages[-1], HumanMessage):
            return call("sklearn_magic", {"x": 1})
        return copy_a(messages, kwargs)
    model = ScriptedModel(script)
    study, _, _ = run(tmp_path, model, trials=1)
    assert "unknown tool 'sklearn_magic'" in model.calls[1][0][-1].content
    assert len(events(study, "guard_retry")) == 1 and study.trials()[0].status == "complete"


def test_out_of_space_configs_never_train_and_end_in_the_fallback(tmp_path):
    bad = {**GOOD, "learning_rate_init": 5.0}
    model = ScriptedModel(lambda m, k: call("train_on_gpu", {"params": bad}))
    study, state, _ = run(tmp_path, model, trials=2, max_retries=2)
    # Per round: 3 answers (first + 2 retries), then the fallback decides.
    assert len(model.calls) == 6 and state["retries"] == 4 and state["fallbacks"] == 2
    assert "learning_rate_init" in model.calls[1][0][-1].content
    assert all(study.space.is_valid(t.config) for t in study.trials())
    # an unscored round's fallback trains its most central proposal (the start-up pick)
    first = next(d for d in events(study, "decision") if d["by"] == "fallback")
    assert first["trained"] == min(first["offers"], key=lambda o: off_centre(study.space, o[1]))
    assert all(t.config["learning_rate_init"] <= 1.0 for t in study.trials())


def test_plain_text_gets_one_reminder_then_the_fallback(tmp_path):
    model = ScriptedModel(lambda m, k: AIMessage(content="I think B looks good."))
    study, state, _ = run(tmp_path, model, trials=2)
    assert len(model.calls) == 4  # text, reminder, text, fallback - per round
    assert "Answer with a tool call" in model.calls[1][0][-1].content
    assert len(events(study, "guard_reminder")) == 2 and state["fallbacks"] == 2
    assert len(study.trials(status="complete")) == 2


def test_suggest_tools_explore_and_their_configs_are_attributed(tmp_path):
    def script(messages, kwargs):
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return call("train_on_gpu", {"params": last.artifact["configs"][0], "tool": "whatever"}, 2)
        return call("optuna_suggest", {"sampler": "random", "n": 2}, 1)
    model = ScriptedModel(script)
    study, _, _ = run(tmp_path, model, trials=2)
    assert [t.tool for t in study.trials()] == ["optuna:random"] * 2
    assert len(study.timings("tool_call")) >= 4  # panel asks and the explicit suggest calls


def test_bad_suggest_arguments_are_a_retry(tmp_path):
    def script(messages, kwargs):
        if isinstance(messages[-1], HumanMessage):
            return call("optuna_suggest", {"sampler": "magic"})
        return copy_a(messages, kwargs)
    model = ScriptedModel(script)
    study, _, _ = run(tmp_path, model, trials=1)
    assert "sampler" in model.calls[1][0][-1].content and len(events(study, "guard_retry")) == 1


def test_stop_ends_the_session(tmp_path):
    model = ScriptedModel(lambda m, k: call("stop", {"reason": "converged"}) if rounds(m) == 2
                          else copy_a(m, k))
    study, state, _ = run(tmp_path, model, trials=5)
    assert state["stop"] and len(study.trials()) == 1
    assert events(study, "stop")[0]["reason"] == "converged"


def test_refused_tool_choice_moves_on_without_breaking_the_session(tmp_path):
    model = ScriptedModel(copy_a, refuse=("required",))
    study, _, _ = run(tmp_path, model, trials=2)
    assert len(study.trials(status="complete")) == 2
    assert events(study, "tool_choice") == [
        {"refused": "required", "next": "auto", "status": 400,
         "reason": events(study, "tool_choice")[0]["reason"]}]
    assert [k.get("tool_choice") for _, k in model.calls] == ["required", "auto", "auto"]


def test_unreachable_llm_falls_back_every_round(tmp_path):
    def script(messages, kwargs):
        raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
    study, state, _ = run(tmp_path, ScriptedModel(script), trials=2)
    assert state["fallbacks"] == 2 and len(events(study, "llm_error")) == 2
    assert "APIConnectionError" in events(study, "llm_error")[0]["reason"]


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


def test_an_llm_answer_cannot_run_code_or_write_files(tmp_path, monkeypatch):
    """Answers are data: parsed by a schema, labels looked up, own configurations validated
    against the space; nothing in them is imported, evaluated or used as a path."""
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    answers = iter([
        json.dumps({"action": "own", "params": {**GOOD, "alpha": payload}}),
        json.dumps({"action": "own", "params": {**GOOD, "width": f"{marker}"}}),
        json.dumps({"action": "train", "choice": f"open('{marker}', 'w')"}),
    ] * 3)
    model = ScriptedModel(lambda m, k: AIMessage(content=next(answers, '{"action": "stop"}')))
    monkeypatch.chdir(tmp_path)
    study, state, _ = run(tmp_path, model, protocol="json", trials=2)
    assert not marker.exists() and not list(tmp_path.glob("*pwned*"))
    space = study.space
    for t in study.trials():
        assert space.validate(t.config) == t.config  # every trained config is a valid one
        assert payload not in json.dumps(t.config)
    assert state["fallbacks"] >= 1  # the answers were refused, the prior decided


def test_json_protocol_maps_onto_the_same_choices(tmp_path):
    answers = iter(['not json at all', '{"action": "train", "choice": "B"}',
                    '{"action": "own", "params": {"alpha": 7}}',
                    '{"action": "own", "params": ' + str(GOOD).replace("'", '"') + '}',
                    '{"action": "stop"}'])
    model = ScriptedModel(lambda m, k: AIMessage(content=next(answers)))
    study, state, _ = run(tmp_path, model, protocol="json", trials=5)
    assert "response_format" in model.calls[0][1]
    assert [t.tool for t in study.trials()] == ["optuna:cmaes", "llm"]  # B is CMA-ES's
    assert study.trials()[1].config == GOOD
    assert len(events(study, "guard_reminder")) == 1 and len(events(study, "guard_retry")) == 1
    assert "alpha" in events(study, "guard_retry")[0]["reason"] and state["stop"]


def test_compact_labels_and_the_two_step_own_decision(tmp_path):
    """A decision is one JSON string; "own" asks for the configuration in a second call, whose
    answer trains as the LLM's; on a llama.cpp server the label goes as an exact grammar."""
    def script(messages, kwargs):
        if messages[-1].content.startswith("Your configuration"):
            assert kwargs["response_format"]["json_schema"]["name"] == "params"
            return AIMessage(content=json.dumps(GOOD))
        return AIMessage(content='"own"' if len(messages) == 1 and "## Round 2 (" in
                         messages[0].content else '"B"')
    model = ScriptedModel(script)
    study, state, _ = run(tmp_path, model, protocol="json", trials=3, grammar=True)
    assert [t.tool for t in study.trials()][:2] == ["optuna:cmaes", "llm"]  # B, then its own
    assert study.trials()[1].config == GOOD and state["retries"] == 0
    decisions = [k for _, k in model.calls if "extra_body" in k]
    assert len(decisions) == 3 and decisions[0]["extra_body"]["grammar"].startswith(
        'root ::= "\\"A\\""')
    own = [c for c in study.timings("llm_call") if c["detail"].get("own")]
    assert len(own) == 1


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


@pytest.mark.parametrize("script, refuse, expected", [
    (lambda m, k: call("report_ready", {"ready": True}), (), "tools"),
    (lambda m, k: AIMessage(content="Sure! I am ready."), (), "json"),
    (lambda m, k: call("report_ready", {"ready": True}), ("required", "auto", None), "json"),
])
def test_auto_protocol_probes_the_model(ledger, toy_space, script, refuse, expected):
    study = ledger.create_study("p", toy_space, metric="loss", direction="minimize")
    assert pick_protocol(ScriptedModel(script, refuse), "auto", study) == expected
    assert study.events("protocol")[0]["detail"]["chosen"] == expected
    assert pick_protocol(ScriptedModel(script), "json") == "json"


def test_speculation_overlaps_training_and_accepts_within_tau(tmp_path):
    # The table's train_time, scaled: trials of ~0.1-1 s.
    study, _, _ = run(tmp_path, ScriptedModel(copy_a), trials=6, time_scale=0.02,
                      speculation="threshold", tau=1e9)
    calls = study.timings("llm_call")
    ahead = [c for c in calls if c["detail"].get("ahead")]
    spec = [c for c in calls if c["detail"].get("speculative") and c not in ahead]
    trains = study.timings("train")
    assert spec and len(study.trials()) == 6
    judged_at = {e["detail"]["round"]: e["at"] for e in study.events("speculation")}
    for c in spec:  # asked once its trial was in flight, answered before that trial was judged
        assert any(t["start"] <= c["start"] for t in trains)
        assert c["end"] <= judged_at[c["detail"]["round"]]
    judged = events(study, "speculation")
    assert judged and all(e["accepted"] for e in judged)
    # Accepted rounds need no critical-path call. Round 1 has nothing to decide from: it
    # trains the prior's pick while round 1's prompt is asked in the background, and that
    # answer decides round 2. Rounds 3-6 are speculative; none past the budget.
    assert len(ahead) == 1 and len(spec) == 4 and len(calls) == 5
    assert [e["detail"]["by"] for e in study.events("decision")] == ["plan"] + ["llm"] * 5
    # The forks' proposals never come back as repeats from the real tools.
    assert len({json.dumps(t.config) for t in study.trials()}) == 6


def test_rejected_speculation_leaves_only_the_serial_trials(tmp_path):
    study, _, _ = run(tmp_path, ScriptedModel(copy_a), trials=4, time_scale=0.02,
                      speculation="threshold", tau=0.0)
    judged = events(study, "speculation")
    assert judged and not any(e["accepted"] for e in judged if e["predicted"] != e["actual"])
    assert len(study.trials()) == 4 and all(t.status == "complete" for t in study.trials())
    wasted = [t for t in study.timings("speculation") if t["detail"]["wasted"]]
    assert len(wasted) == sum(not e["accepted"] for e in judged)


def _session(tmp_path, name, speculation):
    return run(tmp_path, ScriptedModel(copy_a), trials=6, time_scale=0.01, name=name, seed=7,
               speculation=speculation, tau=0.05)[0]


def test_lossless_mode_makes_exactly_the_serial_decisions(tmp_path):
    serial = _session(tmp_path, "serial", "off")
    lossless = _session(tmp_path, "lossless", "lossless")
    assert [(t.tool, t.config) for t in lossless.trials()] == [
        (t.tool, t.config) for t in serial.trials()]
    judged = events(lossless, "speculation")
    assert judged and all(e["mode"] == "lossless" for e in judged)
    assert not serial.events("speculation")
    # Every round still asks the LLM on the critical path (that is what makes it lossless).
    critical = [c for c in lossless.timings("llm_call") if not c["detail"].get("speculative")]
    assert len(critical) == 6


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
    assert ("dispatch", "selftune") in edges and ("dispatch", "await_train") not in edges


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
_SEEN = threading.Condition()


def _note_assumed(messages, kwargs):
    """copy_a, noting every configuration the prompt's log shows a result for."""
    rows = re.findall(r"^Round \d+: \S+ \(\S+\) (.*) -> trial \d+: ", messages[0].content, re.M)
    with _SEEN:
        _ASSUMED.update(rows)
        _SEEN.notify_all()
    return copy_a(messages, kwargs)


def _lands_after_speculation(config, report):
    """A trial that ends once a prompt has assumed its result: the speculative call for the
    next round is then in flight (or, before any trial completed, after 2 s)."""
    from asap.tools.space import format_value  # how the prompt writes it
    with _SEEN:
        _SEEN.wait_for(lambda: format_value(config["x"]) in _ASSUMED, timeout=2.0)
    return {"score": config["x"]}


def test_a_missed_prediction_cancels_the_speculative_call(tmp_path):
    """Each trial lands while the speculative call for the round after it is streaming (an
    event, not a duration); tau 0 misses every prediction, so each such call is cut short."""
    from asap.graphs.context import make_context
    from asap.tools.ledger import Ledger
    from asap.tools.portfolio import Portfolio
    from asap.tools.space import Space
    from asap.tools.trainer import Trainer
    from asap.tools.workloads import Workload
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    wl = Workload("test:lands", _lands_after_speculation, space, "score", "maximize")
    study = Ledger(tmp_path / "c.db").create_study("c", space, metric="score",
                                                   direction="maximize")
    _ASSUMED.clear()
    model = ScriptedModel(_note_assumed, stream_delay=3.0)  # a full answer would take 3 s
    ctx = make_context(study, Portfolio(study), Trainer(study, wl, in_process=True), model,
                       protocol="tools", max_trials=7, speculation="threshold")
    run_graph(ctx, tau=0.0)
    cancelled = [c for c in study.timings("llm_call") if c["detail"].get("cancelled")]
    assert len(cancelled) >= 3 and all(c["duration"] < 2.0 for c in cancelled)  # not 3 s
    assert all(c["detail"]["speculative"] for c in cancelled)
    rows = [t for t in study.timings("speculation") if t["detail"]["cancelled"]]
    assert rows and all(t["detail"]["wasted"] for t in rows)
    assert len(study.trials(status="complete")) == 7


def _decisions(study):
    """Critical-path LLM calls, accepted speculative rounds, decisions asked ahead and taken,
    and rounds decided without a call (the first): one per trial, never more."""
    critical = [c for c in study.timings("llm_call") if not c["detail"].get("speculative")]
    return (len(critical) + sum(e["accepted"] for e in events(study, "speculation"))
            + sum(e.get("verdict") == "train" for e in events(study, "ahead"))
            + sum(d["by"] == "plan" for d in events(study, "decision")))


def test_depth_chains_rounds_while_training_and_carries_them(tmp_path):
    # Trials of ~0.2-2 s of simulated time (the seed fixes which): long enough to chain in.
    study, _, rt = run(tmp_path, ScriptedModel(copy_a), trials=7, time_scale=0.2,
                       speculation="threshold", tau=1e9, depth=3)
    spec = [c for c in study.timings("llm_call")
            if c["detail"].get("speculative") and not c["detail"].get("ahead")]
    trains = study.timings("train")
    assert {c["detail"]["level"] for c in spec} >= {0, 1}  # rounds chained past the nearest one
    for c in spec:  # every speculative call was asked once a trial was in flight
        assert any(t["start"] <= c["start"] for t in trains)
    judged = events(study, "speculation")
    assert max(e["depth"] for e in judged) >= 2 and all(e["accepted"] for e in judged)
    assert [t.status for t in study.trials()] == ["complete"] * 7
    assert _decisions(study) == 7
    assert len({json.dumps(t.config) for t in study.trials()}) == 7  # no repeat
    # Each accepted chained round trained what its speculative answer chose: proposal A.
    decisions = events(study, "decision")
    # round 1 trains the start-up pick (the most central) while the LLM reads; then always A
    assert decisions[0]["trained"] == min(decisions[0]["offers"],
                                          key=lambda o: off_centre(study.space, o[1]))
    assert len(decisions) == 7 and all(d["choice"].startswith("A ") for d in decisions[1:])
    assert all(d["trained"] == d["offers"][0] for d in decisions[1:])
    assert [d["trial"] for d in decisions] == list(range(7))


def test_a_miss_drops_the_whole_chain_and_nothing_of_it_trains(tmp_path):
    study, _, _ = run(tmp_path, ScriptedModel(copy_a), trials=6, time_scale=0.05,
                      speculation="threshold", tau=0.0, depth=3)
    judged = events(study, "speculation")
    assert judged and not any(e["accepted"] for e in judged if e["predicted"] != e["actual"])
    rows = study.timings("speculation")
    assert sum(not r["detail"]["wasted"] for r in rows) == sum(e["accepted"] for e in judged)
    assert len(rows) > len(judged)  # chained rounds dropped with the missed one: wasted too
    assert len(study.trials()) == 6 and _decisions(study) == 6


def test_lossless_mode_never_chains(tmp_path):
    study, state, ctx = run(tmp_path, ScriptedModel(copy_a), trials=4, time_scale=0.02,
                            speculation="lossless", depth=3)
    assert state["knobs"].depth == 1 and ctx.bounds.depth_max == 1
    assert all(c["detail"]["level"] == 0 for c in study.timings("llm_call")
               if c["detail"].get("speculative"))


def test_an_own_config_that_already_ran_is_never_trained_twice(tmp_path):
    def own_good(messages, kwargs):
        return call("train_on_gpu", {"params": GOOD, "tool": "llm"})
    study, _, _ = run(tmp_path, ScriptedModel(own_good), trials=3)
    trials = study.trials()
    assert trials[0].config == GOOD and trials[0].tool == "llm"
    assert len({json.dumps(t.config) for t in trials}) == 3  # the repeats were replaced
    assert [e["trial"] for e in events(study, "repeat_avoided")] == [0, 0]


def test_extending_a_study_trains_new_configurations(tmp_path):
    study, ctx = australian(tmp_path, ScriptedModel(copy_a), protocol="tools", trials=2)
    run_graph(ctx)
    # "--trials 4" on the same study: a new session, new tools, the same seed.
    from dataclasses import replace

    from asap.tools.portfolio import Portfolio
    more = replace(ctx, portfolio=Portfolio(study, seed=0), max_trials=4)
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
    from asap.agent.stats import summarize
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
