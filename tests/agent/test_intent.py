"""Reading a person's chat messages without the LLM."""

from asap.agent.intent import parse_intent, parse_request


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
