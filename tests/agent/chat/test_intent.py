"""Reading a person's chat messages without the LLM."""

import pytest

from asap.agent.chat.intent import NO, YES, grounded, parse_intent, parse_request
from asap.agent.chat.plan import make_plan
from asap.tools.hpo.space import Space, SpaceError
from asap.tools.hpo.space_edit import pin
from asap.tools.workloads import resolve


def test_plain_requests_and_questions_are_read_without_the_llm():
    assert parse_request("tune the learning rate and width of my model in train.py:fit for "
                         "accuracy, 20 minutes") == {
        "workload": "train:fit", "minutes": 20.0, "params": ["learning rate", "width"],
        "metric": "accuracy"}
    assert parse_request("hpobench:kc1, 12 trials, minimize") == {
        "workload": "hpobench:kc1", "trials": 12, "direction": "minimize"}
    assert parse_request("make it good") == {}
    assert parse_intent("what were the top 3?").n == 3
    assert parse_intent("why CMA-ES?").tool == "cmaes"
    assert parse_intent("10 more trials").trials == 10
    assert parse_intent("narrow lr to 0.001..0.01").model_dump(include={"param", "low", "high"}) \
        == {"param": "lr", "low": 0.001, "high": 0.01}
    assert parse_intent("tell me a joke") is None  # the LLM's turn


def test_off_menu_requests_are_read_as_what_they_ask():
    better = parse_intent("make it better")
    assert better.action == "extend" and better.trials is None  # more trials, not the top 1
    pin = parse_intent("try adam instead of sgd?")
    assert (pin.action, pin.value) == ("pin", "adam")  # not the time split
    assert parse_intent("no, just 1 more").model_dump(include={"action", "trials"}) == {
        "action": "extend", "trials": 1}
    assert YES.match("yes") and not YES.match("yes, but 20 trials") and not YES.match("no")
    assert NO.match("no") and NO.match("Cancel.") and not NO.match("no, just 1 more")


def test_what_the_llm_read_is_kept_only_where_the_message_says_it():
    """A small model copies the extraction prompt's example ("train.py:fit"): a field the
    person never wrote is dropped, so the chat asks for it instead of failing every turn."""
    invented = {"workload": "train:fit", "space_file": "train.py:fit", "trials": 20,
                "params": ["lr", "dropout"], "metric": "accuracy"}
    assert grounded(invented, "tune hpobench:australian") == {}
    assert grounded(invented, "tune my train.py:fit for accuracy, 20 trials, the lr") == {
        "workload": "train:fit", "space_file": "train.py:fit", "trials": 20, "params": ["lr"],
        "metric": "accuracy"}


def test_unnamed_parameters_are_pinned_to_the_workloads_defaults():
    """"tune the learning rate and width of digits-mlp": the rest at digits-mlp's declared
    defaults (adam, batch 32), and a parameter its pinned parent switches off is left out."""
    plan = make_plan({"workload": "digits-mlp", "params": ["learning rate", "width"],
                      "trials": 4}, study="s")
    assert plan["pinned"] == {"weight_decay": 1e-4, "depth": 2, "dropout": 0.1,
                              "batch_size": 32, "optimizer": "adam", "beta1": 0.9}
    assert "momentum" not in plan["params"] and "momentum" not in plan["fixed"]
    assert plan["fixed"].startswith("weight_decay=1e-4, depth=2, dropout=0.1, batch_size=32")
    assert plan["space"].splitlines() == ["- lr: float in [0.0001, 0.3] log",
                                          "- width: int in [16, 256] log"]
    space = Space.from_dict(plan["params"])
    assert space.validate({"lr": 0.01, "width": 64, **plan["pinned"]})


def test_a_choice_can_be_pinned_by_its_value():
    space = resolve("digits-mlp").space
    assert pin(space, "adam")["optimizer"].choices == ["adam"]
    with pytest.raises(SpaceError, match="no parameter of the space has the choice 'rmsprop'"):
        pin(space, "rmsprop")


def test_a_pinned_choice_can_be_switched_back_on_from_the_workloads_space(ledger):
    """"try sgd instead of adam" on a chat study that pinned adam: sgd comes from digits-mlp's
    full space, the free parameters stay free, and momentum (which sgd switches on) returns
    at its default while beta1 (adam's) leaves."""
    from asap.agent.chat.plan import repin
    plan = make_plan({"workload": "digits-mlp", "params": ["learning rate", "width"],
                      "trials": 2}, study="c")
    study = ledger.create_study("c", Space.from_dict(plan["params"]), metric="val_accuracy",
                                direction="maximize", workload="digits-mlp")
    space = repin(study, "sgd")
    assert space["optimizer"].choices == ["sgd"] and space["momentum"].choices == [0.9]
    assert "beta1" not in space.names and space["lr"].high == 0.3 and space["width"].low == 16
    with pytest.raises(SpaceError, match="'rmsprop'"):
        repin(study, "rmsprop")


@pytest.mark.parametrize("text, expected", [
    ("can we keep the learning rate between 0.001 and 0.01 instead",
     {"ranges": {"learning rate": [0.001, 0.01]}}),
    ("lr from 0.001 to 0.01, and still tune all the other parameters too",
     {"ranges": {"lr": [0.001, 0.01]}}),
    ("width in [32, 64] and dropout between 0.3 and 0, 20 trials",
     {"trials": 20, "ranges": {"width": [32.0, 64.0], "dropout": [0.0, 0.3]}}),
    ("tune lr and width, lr between 1e-4 and 1e-2",  # named to tune, and given a range
     {"ranges": {"lr": [1e-4, 1e-2]}, "params": ["lr", "width"]}),
    ("I'd like to find good settings for the digits-cnn model, maybe 4 runs",
     {"workload": "digits-cnn", "trials": 4}),
])
def test_ranges_and_budgets_in_a_persons_words(text, expected):
    assert parse_request(text) == expected


def test_a_range_for_a_users_own_code_replaces_the_guess_and_a_workloads_must_fit():
    plan = make_plan({"workload": "train:fit", "metric": "acc", "trials": 5,
                      "params": ["width"], "ranges": {"learning rate": [0.5, 2.0]}}, study="s")
    assert plan["params"]["lr"]["low"] == 0.5 and plan["params"]["lr"]["high"] == 2.0
    assert set(plan["params"]) == {"width", "lr"} and not plan["pinned"]
    with pytest.raises(SpaceError, match="log scale: its low must be > 0"):
        make_plan({"workload": "train:fit", "metric": "acc", "trials": 5,
                   "ranges": {"lr": [0.0, 0.1]}}, study="s")
    with pytest.raises(SpaceError, match="the new range of 'width' must lie inside"):
        make_plan({"workload": "hpobench:australian", "trials": 5,
                   "ranges": {"width": [2, 9999]}}, study="s")


def test_the_answer_check_finds_what_the_facts_do_not_hold():
    from asap.agent.chat.answers import unsupported

    facts = ("best val_acc 0.9733 (trial 4, optuna:TPE) after 6 trials; lr=0.003\n"
             "Wall-clock 12.3 s: training 10.1 s (82%)")
    assert unsupported("The best val_acc was 0.973, from trial 4 by TPE; training took 82% "
                       "(0.82) of 12.3 s.", facts) == []
    assert unsupported("That was a 1.0% gain, thanks to dropout_rate and cmaes.", facts) == [
        "1.0%", "dropout_rate", "cmaes"]


def test_a_phrasing_that_loops_is_not_an_answer():
    from asap.agent.chat.answers import rambles

    assert rambles("The best is the most efficient.\n\n" * 5) and rambles("  ")
    assert not rambles("The best val_acc was 0.9265, from trial 2. It used width 161.")
