"""bench_real's report: what it reads from the runs, checked against numbers computed here."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from asap.evals import bench_real


def _run(wall: float, train: float, best: float, ends: list[tuple[float, float]],
         seed: int | None = None, rerun: float | None = None) -> dict:
    run = {"wall_s": wall, "train_s": train, "best": best, "ends": ends, "first_trial_s": 0.0,
           "seed": seed}
    return run if rerun is None else {**run, "rerun": rerun}


def test_the_report_gives_each_methods_wall_clock_and_training_against_optuna_tpe():
    runs = {
        "optuna-tpe": [_run(10.0, 9.0, 0.9, [(5.0, 0.9)]), _run(12.0, 11.0, 0.9, [(7.0, 0.9)])],
        "asap-nollm": [_run(15.0, 14.0, 0.95, [(2.0, 0.95)], rerun=0.93),
                       _run(11.0, 10.0, 0.8, [(3.0, 0.8)], rerun=0.8),
                       _run(13.0, 12.0, 0.9, [(2.5, 0.9)], rerun=0.7)],
    }
    console = Console(width=250, record=True)
    console.print(bench_real.report("t", runs, trials=2))
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in console.export_text().splitlines() if line.startswith("│")}
    (wall, wall_x, paired, to_target, to_target_x, best, rerun, train,
     train_x) = rows["asap-nollm"][:9]
    assert (wall, wall_x) == ("13.0 (11.0-15.0)", f"{13.0 / 11.0:.2f}")
    assert (train, train_x) == ("12.0", f"{12.0 / 10.0:.2f}")
    assert to_target == "2.5"  # two of three runs reached 0.9, by 2.5 s
    assert paired == "-"  # runs without seeds cannot be paired
    assert best == "0.9000 (0.8000-0.9500)"
    assert rerun == f"0.8000 / {(0.93 + 0.8 + 0.7) / 3:.4f}"  # median / mean of the re-runs
    assert rows["optuna-tpe"][6:9] == ["-", "10.0", "1.00"]  # recorded without re-runs


def test_time_to_target_is_the_first_time_the_best_so_far_reaches_it():
    ends = [(3.0, 0.5), (1.0, 0.7), (2.0, 0.9)]
    assert bench_real.time_to(ends, 0.9) == 2.0
    assert bench_real.time_to(ends, 0.95) is None
    assert bench_real.median_time([1.0, None, 3.0]) == 3.0
    assert bench_real.median_time([1.0, None, None]) is None
    assert bench_real.median_time([4.0, None, 1.0, None]) == 4.0  # half by 4 s
    assert bench_real.median_time([4.0, None, None, None]) is None


def test_repeats_run_the_seeds_from_first_seed_and_the_json_records_each(tmp_path, monkeypatch):
    out = tmp_path / "runs.json"
    monkeypatch.setattr("sys.argv", ["bench_real", "--tasks", "svc_digits", "--methods",
                                     "optuna-tpe", "--trials", "2", "--repeats", "2",
                                     "--first-seed", "5", "--out", str(out)])
    bench_real.main()
    runs = json.loads(out.read_text())["svc_digits"]["optuna-tpe"]
    assert [r["seed"] for r in runs] == [5, 6]
    assert all(len(r["ends"]) == 2 for r in runs)
    for r in runs:  # the SVC is deterministic: its best configuration re-runs to its value
        assert r["rerun"] == pytest.approx(r["best"])
        assert set(r["best_config"]) == {"C", "gamma"}


def test_a_rerun_seeds_the_global_generators_alike_for_every_method():
    """The MLP's initial weights come from torch's global generator: re-run with the same
    seeds, a configuration is worth the same whichever method returned it and whatever ran
    before; other seeds draw other weights."""
    import torch

    task = bench_real.TASKS["mlp_digits"]
    config = {"lr": 0.01, "width": 32, "depth": 1, "batch_size": 128, "optimizer": "adam"}
    first = bench_real.rerun(task, config, seeds=(1, 2))
    torch.rand(7)  # what ran before moves the global generator
    assert bench_real.rerun(task, config, seeds=(1, 2)) == first
    assert {bench_real.rerun(task, config, seeds=(s,)) for s in (1, 2, 3, 4)} != {first}


def test_the_paired_ratio_matches_runs_by_seed_and_gives_the_geometric_mean():
    tpe = [_run(10.0, 9.0, 0.9, [], seed=0), _run(20.0, 19.0, 0.9, [], seed=1),
           _run(40.0, 39.0, 0.9, [], seed=2)]
    # listed in another order: seed 1 took 2x TPE's seed 1, seed 0 and 2 took 1x and 0.5x
    other = [_run(40.0, 1.0, 0.9, [], seed=1), _run(10.0, 1.0, 0.9, [], seed=0),
             _run(20.0, 1.0, 0.9, [], seed=2)]
    text = bench_real.paired_ratio(other, tpe)
    mean, low, high = (float(v) for v in text.replace("[", "").replace("]", "").replace(",", "")
                       .split())
    assert mean == 1.00  # (2 x 1 x 0.5) ** (1/3)
    assert 0.5 <= low < 1.0 < high <= 2.0
    assert bench_real.paired_ratio(other[:1], tpe) == "-"  # one seed: no interval


def test_two_at_a_time_runs_asap_on_two_workers_and_sums_its_trials_training(tmp_path,
                                                                          monkeypatch):
    """``asap-2workers`` is ``asap.optimize(workers=2)`` and its training is its trials' summed
    seconds (as Optuna's durations are summed), not the stretch of the clock they covered;
    ``optuna-tpe-2jobs`` runs Optuna's ``n_jobs=2``."""
    import optuna

    import asap
    from asap.tools.ledger.store import Ledger

    calls: list[dict] = []
    real_optimize, real_study_optimize = asap.optimize, optuna.Study.optimize
    monkeypatch.setattr(asap, "optimize", lambda *a, **kw: calls.append(kw) or real_optimize(
        *a, **kw))
    monkeypatch.setattr(optuna.Study, "optimize", lambda self, *a, **kw: calls.append(kw) or
                        real_study_optimize(self, *a, **kw))
    task, db = bench_real.TASKS["svc_digits"], str(tmp_path / "b.db")
    run = bench_real.run_asap(task, "asap-2workers", trials=4, seed=0, db=db)
    trains = Ledger(db, readonly=True).open_study("svc_digits-asap-2workers-s0").timings("train")
    assert calls[0]["workers"] == 2 and len(run["ends"]) == 4 and len(trains) == 4
    assert run["train_s"] == pytest.approx(sum(t["end"] - t["start"] for t in trains))
    optuna_run = bench_real.run_optuna(task, "optuna-tpe-2jobs", trials=4, seed=0)
    assert calls[1]["n_jobs"] == 2 and len(optuna_run["ends"]) == 4
