"""The LLM circuit breaker, counted in rounds: failures open it, a probe after the cooldown
closes it or reopens it for twice as long, and every change is told."""

from __future__ import annotations

import pytest

from asap.agent.llm.breaker import Breaker


def test_failures_open_the_circuit_and_a_probe_closes_it():
    told: list[tuple[str, str]] = []
    b = Breaker(failures=2, cooldown=3, on_change=lambda s, r: told.append((s, r)))
    b.failure("timeout")
    assert b.closed() and b.allow() and told == []  # one failure is not a dead endpoint
    b.failure("timeout")
    assert not b.closed() and told[-1][0] == "open" and "2 failed LLM calls" in told[-1][1]
    assert [b.allow() for _ in range(4)] == [False, False, False, True]  # 3 rounds, then a probe
    b.success()
    assert b.closed() and told[-1] == ("closed", "the endpoint answered the probe")


def test_a_failed_probe_doubles_the_wait_up_to_the_cap():
    b = Breaker(failures=1, cooldown=2, max_cooldown=5)
    waits = []
    b.failure("x")
    for _ in range(3):
        skipped = 0
        while not b.allow():
            skipped += 1
        waits.append(skipped)
        b.failure("x")  # the probe failed
    assert waits == [2, 4, 5]
    b.success()
    b.failure("y")  # closed again: the wait is back to the cooldown
    assert sum(1 for _ in iter(lambda: b.allow(), True)) == 2


def test_a_success_between_failures_resets_the_count():
    b = Breaker(failures=2)
    b.failure("x")
    b.success()
    b.failure("x")
    assert b.closed()


@pytest.mark.parametrize("kwargs", [dict(failures=0), dict(cooldown=0),
                                    dict(cooldown=8, max_cooldown=4)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="failures and cooldown must be >= 1"):
        Breaker(**kwargs)
