"""The LLM asked only when it pays, in whole sessions on the virtual clock: a call priced
against the trials beside it (agent.pricing), the prior deciding the rounds a call would not
pay for, and a stagnation point asking in the background for a later round."""

from pathlib import Path

import pytest
from fakes import ManualTime, costing, run_graph
from fakes import virtual_session as session

from asap.tools.hpo.space import Space
from asap.tools.workloads import Workload

SPACE = Space.from_file(Path(__file__).parents[1] / "userwl" / "simulated.yaml")


def _workload(fn: str, seconds: float) -> Workload:
    import userwl.simulated as simulated
    return Workload(f"simulated:{fn}", getattr(simulated, fn), SPACE, "score", "maximize",
                    kwargs={"seconds": seconds}, duration="train_time")


def _by(study) -> list[str]:
    return [e["detail"]["by"] for e in study.events("decision")]


@pytest.mark.parametrize(("trial_s", "asked"), [(300.0, True), (1.0, False)])
def test_the_llm_decides_when_a_call_costs_little_beside_a_trial(tmp_path, trial_s, asked):
    """Five-minute trials: a 2-s decision is 0.7 % of one, asked every round on the critical
    path. One-second trials: it would cost twice a trial and the LLM has no record, so the
    prior decides every round after the start-up ones and the LLM is never called."""
    source = ManualTime()
    model = costing(source, 2.0)
    study, ctx = session(tmp_path, model, source, workload=_workload("constant", trial_s),
                         trials=6, speculation="off", llm_after=3, ask="priced")
    run_graph(ctx)
    study.clock.close()
    assert _by(study)[3:] == (["llm"] * 3 if asked else ["prior"] * 3)
    assert len(model.calls) == (3 if asked else 0)
    priced = study.events("llm_price")
    assert [e["detail"]["ask"] for e in priced] == [asked]
    assert ("of a trial (~300.0 s)" if asked else "has not yet beaten the prior") in \
        priced[0]["detail"]["why"]


def test_a_stagnation_point_asks_in_the_background_for_a_later_round(tmp_path):
    """A flat objective stagnates from its first trial. A call (priced at FIRST_CALL_S = 2 s,
    none measured yet) is twice a 1-s trial: the prior decides. Once 12 trials (a fifth of the
    budget of 60) bring nothing better and 2 s is at most 5 % of the training left, the call is
    asked while the next trial trains (no round waits for it), its answer decides a later
    round, and the prior decides again (one call per stagnation point)."""
    source = ManualTime()
    model = costing(source, 0.5)
    study, ctx = session(tmp_path, model, source, workload=_workload("flat", 1.0), trials=60,
                         speculation="off", llm_after=3, ask="priced")
    run_graph(ctx)
    study.clock.close()
    by = _by(study)
    assert len(model.calls) == 1  # one call, asked ahead at the stagnation point
    call = study.timings("llm_call")[0]
    assert call["detail"].get("ahead") and call["detail"]["round"] == 14
    taken = study.events("ahead")
    assert len(taken) == 1 and taken[0]["detail"]["asked"] == 14
    assert by.count("llm") == 1 and by[taken[0]["detail"]["round"] - 1] == "llm"
    assert by[13] == "prior"  # the round that asked did not wait for the answer
    assert [e["detail"]["ask"] for e in study.events("llm_price")][:2] == [False, True]
