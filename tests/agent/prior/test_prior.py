"""The prior that orders each round's proposals (GP expected improvement)."""

import math

from conftest import toy_objective

from asap.agent.prior.fit import encode
from asap.agent.prior.ranking import brief, describe, rank
from asap.agent.prompt import PromptBuilder


def _study(ledger, toy_space, points):
    study = ledger.create_study("p", toy_space, metric="loss", direction="minimize")
    for x in points:
        cfg = {"x": x, "lr": 0.01, "n_layers": 1, "optimizer": "adam"}
        tid = study.start_trial(cfg, tool="optuna:tpe")
        study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})
    return study


def offer(x):
    return ("tool", {"x": x, "lr": 0.01, "n_layers": 1, "optimizer": "adam"})


def test_too_few_trials_keep_the_panel_order(ledger, toy_space):
    study = _study(ledger, toy_space, [0.0, 4.0])
    offers = [offer(-4.0), offer(2.0)]
    assert rank(study, offers) == (offers, [None, None])


def test_proposals_are_ordered_by_expected_improvement(ledger, toy_space):
    # The optimum is at x=2 (loss 0); the log has the curve around it.
    study = _study(ledger, toy_space, [-5.0, -3.0, -1.0, 0.5, 3.5, 5.0])
    offers = [offer(-4.5), offer(2.0), offer(4.8)]
    ranked, scores = rank(study, offers)
    assert ranked[0] == offer(2.0)  # the prior's pick is A
    assert [s.ei for s in scores] == sorted((s.ei for s in scores), reverse=True)
    by_x = {cfg["x"]: s for (_, cfg), s in zip(ranked, scores, strict=True)}
    assert by_x[2.0].mean < by_x[-4.5].mean  # minimize: a lower predicted loss near the optimum
    assert rank(study, offers) == (ranked, scores)  # deterministic, so the log stays stable


def test_predicted_trials_count_in_a_speculative_round(ledger, toy_space):
    study = _study(ledger, toy_space, [-5.0, 0.0])
    assumed = study.trials()[-1]
    import dataclasses
    extra = [dataclasses.replace(assumed, id=-1, config={**assumed.config, "x": 4.0}, value=4.0)]
    _, scores = rank(study, [offer(1.0)], extra=extra)
    assert scores[0] is not None  # three points with the predicted one


def test_scores_stand_beside_each_proposal(ledger, toy_space):
    study = _study(ledger, toy_space, [-5.0, -1.0, 3.0, 5.0])
    proposals, scores = rank(study, [offer(1.0), offer(-4.0)])
    text = PromptBuilder(study, "- tool", proposals="full").round_text(5, proposals, scores)
    lines = [x for x in text.splitlines() if x[:2] in ("A ", "B ")]
    assert len(lines) == 2 and all(" | " in x and " ±" in x and " EI " in x for x in lines)
    assert describe(None) == "" and brief(None) == ""
    # Brief (the JSON protocol's default): the tool, its record, the prediction; no config.
    text = PromptBuilder(study, "- tool").round_text(5, proposals, scores)
    lines = [x for x in text.splitlines() if x[:2] in ("A ", "B ")]
    assert [x.split(":")[0] for x in lines] == ["A tool 0/0", "B tool 0/0"]
    # ... and its predicted training time (here: the ledger's real, sub-second durations)
    assert all(" ±" in x and " EI " not in x and x.split()[-1] == "s" and "~" in x
               for x in lines)


def test_encoding_is_the_unit_cube_with_one_hot_categoricals(toy_space):
    point = encode(toy_space, {"x": 5.0, "lr": 1e-4, "n_layers": 1, "optimizer": "sgd",
                               "momentum": 0.0})
    # x, lr (log), n_layers, units_l3 (inactive: centre), optimizer one-hot, momentum
    assert point == [1.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0]


def test_values_the_gp_cannot_fit_are_left_out_with_a_note(ledger, toy_space):
    """Three trials at 1e308 made every fit fail ("Input y contains NaN"): left out, noted."""
    from asap.agent.prior.ranking import rank
    study = ledger.create_study("huge", toy_space, metric="loss", direction="minimize")
    base = {"lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    for i, loss in enumerate([1e308, 1e308, 1e308, 0.5, 0.25, 0.75]):
        tid = study.start_trial({**base, "x": float(i - 3)}, tool="optuna:tpe")
        study.finish_trial(tid, status="complete", metrics={"loss": loss})
    offers = [("optuna:tpe", {**base, "x": 0.5}), ("nevergrad:DE", {**base, "x": 4.0})]
    for _ in range(2):
        ranked, scores = rank(study, offers)
        assert all(s is not None and math.isfinite(s.mean) for s in scores)
    [note] = study.events("prior_excluded")  # once, however many rounds
    assert note["detail"]["trials"] == [0, 1, 2]


def test_a_running_trial_counts_as_pending_at_its_predicted_value(ledger, toy_space):
    """N workers: with a trial in flight at the optimum (x=2), its near twin's expected
    improvement all but vanishes (the kriging believer: the running trial counts as returning
    the GP's mean there, so little is left to gain beside it); once it lands, the prior ranks on
    what it really returned."""
    study = _study(ledger, toy_space, [-5.0, -3.0, -1.0, 0.5, 3.5, 5.0])
    twin = offer(2.05)
    alone = rank(study, [twin])[1][0]
    running = study.start_trial(offer(2.0)[1], tool="optuna:tpe")
    pending = rank(study, [twin])[1][0]
    assert pending.ei < 0.05 * alone.ei and pending.sd < 0.5 * alone.sd
    assert abs(pending.mean - alone.mean) < 0.05  # believed, not learned: the mean stays
    study.finish_trial(running, status="complete", metrics={"loss": 3.0})  # a surprise
    assert rank(study, [twin])[1][0].mean > alone.mean + 0.5
