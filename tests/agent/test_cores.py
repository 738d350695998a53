"""How many workers fill the cores (asap.agent.cores), from train timing rows as the ledger
keeps them: a trial's CPU seconds over its seconds, the median over the trials."""

from __future__ import annotations

from asap.agent.cores import busy, filling, grow_to, training_share


def rows(cpu: list[float], seconds: float = 2.0, gap: float = 0.0) -> list[dict]:
    """One train row per trial, one after the other, ``gap`` seconds apart."""
    at, out = 0.0, []
    for c in cpu:
        out.append({"start": at, "end": at + seconds, "detail": {"cpu_s": c}})
        at += seconds + gap
    return out


def test_busy_is_the_median_trials_cores_and_unmeasured_rows_say_nothing():
    assert busy(rows([2.0, 1.8, 8.0])) == 1.0  # 2 s trials: 1 core, 0.9, 4
    assert busy([{"start": 0, "end": 1, "detail": {}}]) is None


def test_filling_rounds_to_the_workers_the_cores_hold():
    assert [filling(b, 4) for b in (0.1, 1.0, 1.3, 2.0, 3.0, 4.0, 9.0)] == [4, 4, 3, 2, 1, 1, 1]
    assert [filling(b, 2) for b in (0.0, 0.9, 1.3, 1.4, 2.0)] == [2, 2, 2, 1, 1]


def test_training_share_is_the_trials_seconds_over_their_stretch():
    assert training_share(rows([1, 1], seconds=1.0, gap=1.0)) == 2 / 3
    assert training_share([]) == 0.0


def test_it_grows_where_a_core_stood_idle_while_training_set_the_pace():
    one_core = rows([2.0, 2.0, 2.0])  # 1 core busy of 4
    assert grow_to(one_core, cores=4, workers=1, left=27) == 4
    assert grow_to(one_core, cores=4, workers=1, left=12) == 2  # one per 5 trials left
    assert grow_to(one_core, cores=4, workers=1, left=4) is None
    assert grow_to(one_core[:2], cores=4, workers=1, left=27) is None  # too few measured
    assert grow_to(rows([8.0, 8.0, 8.0]), cores=4, workers=1, left=27) is None  # all 4 busy
    assert grow_to(one_core, cores=4, workers=4, left=27) is None  # filled already
    paced_by_tuner = rows([0.02] * 3, seconds=0.02, gap=0.1)  # trials of 20 ms, gaps of 100
    assert grow_to(paced_by_tuner, cores=4, workers=1, left=27) is None
