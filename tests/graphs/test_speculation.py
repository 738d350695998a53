"""Speculation beside training: the accept test, lossless mode, chained rounds, and a missed
prediction cancelling the speculative call. The chat model is scripted; the rest is real.
"""

from __future__ import annotations

import json
import re
import threading

from fakes import ScriptedModel, run_graph, settings
from graphrun import copy_a, events, run

from asap.agent.prior.fit import off_centre


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


def test_no_round_before_llm_after_is_decided_speculatively(tmp_path):
    """The start-up rounds train the fallback's pick: speculation, like the critical path,
    first decides the round after ``llm_after`` trials have finished."""
    study, _, _ = run(tmp_path, ScriptedModel(copy_a), trials=7, time_scale=0.02,
                      speculation="threshold", tau=1e9, llm_after=3, decide_ahead=False)
    spec = [c for c in study.timings("llm_call")
            if c["detail"].get("speculative") and not c["detail"].get("ahead")]
    assert spec and min(c["detail"]["round"] for c in spec) >= 4
    by = [e["detail"]["by"] for e in study.events("decision")]
    assert by[:3] == ["prior", "prior", "prior"] and "llm" in by[3:]


def test_rejected_speculation_leaves_only_the_serial_trials(tmp_path):
    study, _, _ = run(tmp_path, ScriptedModel(copy_a), trials=4, time_scale=0.02,
                      speculation="threshold", tau=0.0)
    judged = events(study, "speculation")
    assert judged and not any(e["accepted"] for e in judged if e["predicted"] != e["actual"])
    assert len(study.trials()) == 4 and all(t.status == "complete" for t in study.trials())
    wasted = [t for t in study.timings("speculation") if t["detail"]["wasted"]]
    assert len(wasted) == sum(not e["accepted"] for e in judged)


def _session(tmp_path, name, speculation, **settings):
    return run(tmp_path, ScriptedModel(copy_a), trials=6, time_scale=0.01, name=name, seed=7,
               speculation=speculation, tau=0.05, **settings)[0]


def test_lossless_mode_makes_exactly_the_serial_decisions(tmp_path):
    # The serial loop that asks each round's tools after its trial lands (not meanwhile).
    serial = _session(tmp_path, "serial", "off", prefetch=False)
    lossless = _session(tmp_path, "lossless", "lossless")
    assert [(t.tool, t.config) for t in lossless.trials()] == [
        (t.tool, t.config) for t in serial.trials()]
    judged = events(lossless, "speculation")
    assert judged and all(e["mode"] == "lossless" for e in judged)
    assert not serial.events("speculation")
    # Every round still asks the LLM on the critical path (that is what makes it lossless).
    critical = [c for c in lossless.timings("llm_call") if not c["detail"].get("speculative")]
    assert len(critical) == 6


_SEEN = threading.Condition()
_ASSUMED: set[str] = set()  # configs some prompt has already shown a result for


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
    from asap.tools.hpo.space import format_value  # how the prompt writes it
    with _SEEN:
        _SEEN.wait_for(lambda: format_value(config["x"]) in _ASSUMED, timeout=2.0)
    return {"score": config["x"]}


def test_a_missed_prediction_cancels_the_speculative_call(tmp_path):
    """Each trial lands while the speculative call for the round after it is streaming (an
    event, not a duration); tau 0 misses every prediction, so each such call is cut short."""
    from asap.graphs.context import make_context
    from asap.tools.hpo.portfolio import Portfolio
    from asap.tools.hpo.space import Space
    from asap.tools.ledger.store import Ledger
    from asap.tools.trials.trainer import Trainer
    from asap.tools.workloads import Workload
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    wl = Workload("test:lands", _lands_after_speculation, space, "score", "maximize")
    study = Ledger(tmp_path / "c.db").create_study("c", space, metric="score",
                                                   direction="maximize")
    _ASSUMED.clear()
    model = ScriptedModel(_note_assumed, stream_delay=3.0)  # a full answer would take 3 s
    cfg, live = settings("test:lands", 7, {"speculation": "threshold"})
    ctx = make_context(study, Portfolio(study), Trainer(study, wl, in_process=True), model,
                       cfg, protocol="tools", **live)
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
