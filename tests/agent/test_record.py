"""The LLM's record against the prior, read from the ledger's decision events."""

from asap.agent.record import llm_record


def _round(study, value, choice, by="llm", predicted=0.5):
    """One round: a trial trained and its decision event (scores in the prior's order)."""
    tid = study.start_trial({"x": value, "lr": 0.01, "n_layers": 1, "optimizer": "adam"},
                            tool="optuna:tpe")
    study.finish_trial(tid, status="complete", metrics={"loss": value})
    study.log_event("decision", round=tid, trial=study.trial(tid).number, by=by,
                    choice=f"{choice} (optuna:tpe)", scores=[[predicted, 0.1, 0.01], None])


def test_departures_are_counted_with_what_they_earned(ledger, toy_space):
    study = ledger.create_study("r", toy_space, metric="loss", direction="minimize")
    _round(study, 1.0, "A")
    _round(study, 0.4, "B")  # beat the prior's 0.5 for A, and the best: paid, improved
    _round(study, 0.9, "own")  # worse than 0.5: departed, did not pay
    _round(study, 0.45, "C", predicted=0.3)  # worse than the prior predicted for A: no pay
    _round(study, 0.2, "A", by="plan")  # a plan's round is not the LLM's answer
    _round(study, 0.3, "A")
    _round(study, 0.3, "A")
    record = llm_record(study)
    assert (record.decisions, record.departed, record.paid, record.improved) == (6, 3, 1, 1)
    assert record.streak == 2 and not record.last_paid
    assert record.sentence() == ("the LLM departed from the prior in 3 of 6 decisions "
                                 "(1 improved the best)")
    _round(study, 0.1, "B")  # a new best, beats 0.5
    assert llm_record(study).last_paid and llm_record(study).streak == 0


def test_rounds_the_prior_had_not_scored_are_not_counted(ledger, toy_space):
    study = ledger.create_study("r", toy_space, metric="loss", direction="minimize")
    tid = study.start_trial({"x": 1.0, "lr": 0.01, "n_layers": 1, "optimizer": "adam"},
                            tool="optuna:tpe")
    study.finish_trial(tid, status="complete", metrics={"loss": 1.0})
    study.log_event("decision", round=1, trial=0, by="llm", choice="B (nevergrad:DE)",
                    scores=[None, None])
    assert llm_record(study).decisions == 0
