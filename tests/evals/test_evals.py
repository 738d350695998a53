"""The eval suite: metric code on hand-made curves, grid resumability, a tiny real grid."""

from __future__ import annotations

import csv

import pytest

from asap.evals import axes
from asap.evals.grid import PROFILES, Grid, run_grid
from asap.evals.metrics import (
    area_under_regret,
    best_so_far,
    bootstrap_ci,
    normalized_regret,
    ranks,
    regret_curve,
    time_to_target,
    value_at,
)
from asap.evals.report import write_report
from asap.evals.results import collect, summary
from asap.tools.ledger.store import Ledger
from asap.tools.workloads.tabular import true_mean


def test_best_so_far_skips_failures_and_keeps_only_improvements():
    points = [(3.0, 0.5), (1.0, 0.2), (2.0, None), (4.0, 0.4), (5.0, 0.9)]
    assert best_so_far(points, maximize=True) == [(1.0, 0.2), (3.0, 0.5), (5.0, 0.9)]
    assert best_so_far(points, maximize=False) == [(1.0, 0.2)]
    curve = best_so_far(points, maximize=True)
    assert value_at(curve, 0.5) is None and value_at(curve, 3.0) == 0.5 and value_at(curve, 9) == 0.9


def test_normalized_regret_for_both_directions():
    assert normalized_regret(0.9, optimum=1.0, worst=0.5) == pytest.approx(0.2)
    assert normalized_regret(2.0, optimum=1.0, worst=6.0) == pytest.approx(0.2)  # minimizing
    assert normalized_regret(None, 1.0, 0.5) == 1.0 and normalized_regret(1.0, 1.0, 0.5) == 0.0


def test_time_to_target_and_area_under_regret():
    curve = [(2.0, 0.6), (6.0, 0.8), (8.0, 1.0)]
    assert time_to_target(curve, 0.8, maximize=True) == 6.0
    assert time_to_target(curve, 1.1, maximize=True) is None
    regret = regret_curve(curve, optimum=1.0, worst=0.0)  # 0.4 from t=2, 0.2 from 6, 0 from 8
    # 1 over [0, 2), 0.4 over [2, 6), 0.2 over [6, 8), 0 over [8, 10]: (2 + 1.6 + 0.4) / 10
    assert area_under_regret(regret, 10.0) == pytest.approx(0.4)
    assert area_under_regret([], 10.0) == 1.0


def test_ranks_share_ties():
    assert ranks({"a": 0.1, "b": 0.3, "c": 0.1, "d": 0.5}) == {"a": 1.5, "c": 1.5, "b": 3, "d": 4}


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_agreement():
    mean, lo, hi = bootstrap_ci([0.1, 0.2, 0.3, 0.4, 0.5])
    assert mean == pytest.approx(0.3) and lo < mean < hi
    assert bootstrap_ci([0.2] * 5) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2))
    assert bootstrap_ci([0.1, 0.2, 0.3, 0.4, 0.5], seed=3) == bootstrap_ci(
        [0.1, 0.2, 0.3, 0.4, 0.5], seed=3)


def test_bad_grid_settings_are_named():
    with pytest.raises(ValueError, match="unknown method"):
        Grid(tasks=["hpobench:australian"], methods=["nope"])
    with pytest.raises(ValueError, match="unknown workload"):
        Grid(tasks=["nope"], methods=["tpe"])


def test_cells_side_by_side_run_the_same_trials_as_one_at_a_time(tmp_path):
    """--jobs 2 on the virtual clock: every cell done, each with the trials it has run alone."""
    def grid(name: str, jobs: int) -> Grid:
        return Grid(tasks=["hpobench:australian", "hpobench:car"], methods=["tpe", "random"],
                    seeds=2, trials=8, time_scale=0.0, clock="virtual",
                    db=str(tmp_path / f"{name}.db"), jobs=jobs)

    alone, beside = run_grid(grid("alone", 1)), run_grid(grid("beside", 2))
    assert "2 cells at a time" in grid("beside", 2).describe()
    cells = grid("alone", 1).cells()
    assert len(cells) == 8
    for cell in cells:
        ran = [(t.config, t.value) for t in alone.open_study(cell.study).trials()]
        assert len(ran) == 8
        assert [(t.config, t.value) for t in beside.open_study(cell.study).trials()] == ran
    assert [row["status"] for row in beside.db["eval_cells"].rows] == ["done"] * 8
    with pytest.raises(ValueError, match="virtual clock only"):
        Grid(tasks=["hpobench:australian"], methods=["tpe"], jobs=2)
    with pytest.raises(ValueError, match="--jobs must be at least 1"):
        Grid(tasks=["hpobench:australian"], methods=["tpe"], clock="virtual", time_scale=0.0,
             jobs=0)


def test_a_ray_grid_runs_asaps_sessions_on_ray_and_refuses_what_it_cannot(tmp_path):
    """``backend="ray"``: asap's sessions (the prior here) run their trials as Ray tasks, on the
    real clock or the virtual one; the methods that keep their trials in this process are
    refused by name before anything runs."""
    with pytest.raises(ValueError, match=r"\['tpe'\] run their trials in this process"):
        Grid(tasks=["hpobench:australian"], methods=["prior", "tpe"], backend="ray")
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        Grid(tasks=["hpobench:australian"], methods=["prior"], backend="slurm")
    with pytest.raises(ValueError, match="a Ray address is for the ray backend"):
        Grid(tasks=["hpobench:australian"], methods=["prior"], ray_address="127.0.0.1:6379")
    # A cluster address reaches the session, which names it when nothing answers there.
    from asap.evals.methods import METHODS
    from asap.tools.workloads import resolve

    far = Grid(tasks=["hpobench:australian"], methods=["prior"], seeds=1, trials=4, time_s=120,
               time_scale=0.01, backend="ray", ray_address="127.0.0.1:9",
               db=str(tmp_path / "far.db")).cells()[0]
    assert far.ray_address == "127.0.0.1:9"
    with pytest.raises(Exception, match=r"Ray cluster at 127\.0\.0\.1:9 does not answer"):
        METHODS["prior"](far, resolve(far.task))
    grid = Grid(tasks=["hpobench:australian"], methods=["prior"], seeds=1, trials=4,
                time_s=120, time_scale=0.0, workers=2, backend="ray",
                db=str(tmp_path / "ray.db"))
    assert "trials as Ray tasks" in grid.describe()
    study = run_grid(grid).open_study("hpobench-australian.prior.s0")
    assert [t.status for t in study.trials()] == ["complete"] * 4
    assert [e["detail"]["backend"] for e in study.events("session")] == ["ray"]
    # On the virtual clock the simulated schedule is the workers', not the Ray instance's CPUs:
    # 4 trials in flight on a 2-CPU instance (the clock waits for every result it schedules).
    grid = Grid(tasks=["hpobench:australian"], methods=["prior"], seeds=1, trials=8,
                time_scale=0.0, clock="virtual", workers=4, backend="ray",
                db=str(tmp_path / "rayv.db"))
    study = run_grid(grid).open_study("hpobench-australian.prior.s0")
    trials = study.trials()
    assert [t.status for t in trials] == ["complete"] * 8
    assert [e["detail"]["backend"] for e in study.events("session")] == ["ray"]
    assert {e["detail"]["clock"] for e in study.events("session")} == {"virtual"}
    in_flight = max(sum(u.started_at <= t.started_at < u.ended_at for u in trials)
                    for t in trials)
    assert in_flight == 4


def test_a_tiny_real_grid_end_to_end_and_resumes(tmp_path):
    grid = Grid(tasks=["hpobench:australian"], methods=["tpe", "portfolio"], seeds=2, trials=4,
                time_s=30, time_scale=0.0, db=str(tmp_path / "eval.db"))
    ledger = run_grid(grid)
    cells = collect(ledger)
    assert sorted((c.method, c.seed) for c in cells) == [
        ("portfolio", 0), ("portfolio", 1), ("tpe", 0), ("tpe", 1)]
    assert all(c.trials == 4 and c.exact_optimum and 0 <= c.regret <= 1 for c in cells)
    # Scored by the table's mean over its seeds: the best mean of the grid is the optimum, and a
    # cell is worth the mean of the configuration it returns (its best observed trial).
    assert cells[0].optimum == pytest.approx(0.9446693657219974)
    for c in cells:
        study = ledger.open_study(c.id)
        returned = study.best()
        assert c.best == pytest.approx(true_mean("hpobench", "australian", returned.config))
    # Every trial drew its own training seed from the table (not the same draw for all).
    draws = {t.value for c in cells for t in ledger.open_study(c.id).trials()}
    means = {true_mean("hpobench", "australian", t.config) for c in cells
             for t in ledger.open_study(c.id).trials()}
    assert draws != means
    s = summary(cells)
    assert sorted(s["avg_rank"].values()) in ([1.0, 2.0], [1.5, 1.5])
    report = write_report(ledger, tmp_path / "out")
    text = report.read_text()
    assert "| tpe |" in text and "| portfolio |" in text
    for png in ("regret_vs_time", "regret_vs_trials", "rank_vs_time"):
        assert (tmp_path / "out" / f"{png}.png").stat().st_size > 1000
    with (tmp_path / "out" / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    assert ledger.db["eval_results"].count == 4

    # Resume: a cut-off cell (marked running, half its trials) is redone; done cells are skipped.
    before = {c.id: [t.id for t in ledger.open_study(c.id).trials()] for c in cells}
    cut = cells[0].id
    ledger.db["eval_cells"].update(cut, {"status": "running"})
    again = run_grid(grid)
    after = {c.id: [t.id for t in again.open_study(c.id).trials()] for c in collect(again)}
    assert len(after) == 4 and len(after[cut]) == 4 and after[cut] != before[cut]
    assert all(after[k] == v for k, v in before.items() if k != cut)  # untouched
    Ledger(grid.db).close()


def test_the_report_says_what_ran_and_marks_runs_cut_short(tmp_path):
    """`asap eval --trials 6` under a 60 s cap: a run that ended early is marked, its trial
    curve stops where it stopped, and a blank column says why."""
    grid = Grid(tasks=["hpobench:australian"], methods=["tpe", "random"], seeds=1, trials=3,
                time_s=30, time_scale=0.0, db=str(tmp_path / "t.db"))
    ledger = run_grid(grid)
    ledger.db["eval_cells"].update("hpobench-australian.tpe.s0", {"trials_budget": 6})  # cut
    text = write_report(ledger, tmp_path / "out", title="asap eval (quick profile, changed by "
                        "--trials)", settings=grid.describe()).read_text()
    assert text.startswith("# asap eval (quick profile, changed by --trials)\n\nRan: "
                           "hpobench:australian x tpe, random, 1 seeds, 3 trials or 30 s per run")
    tpe_row = next(line for line in text.splitlines() if line.startswith("| tpe |"))
    random_row = next(line for line in text.splitlines() if line.startswith("| random |"))
    assert "†" in tpe_row and "†" not in random_row
    assert "- tpe on hpobench:australian: 1 run(s) stopped at 3 of 6 trials" in text
    assert "Time-to-target is left out" in text and "time-to-target |" not in text


def test_decision_quality_and_targets_are_reported(tmp_path):
    from fakes import FakeOpenAI
    server = FakeOpenAI().start()  # decides "A" every round, like SmolLM2 does
    try:
        # The virtual clock: a trial's cost is its table time, not this machine's load, so the
        # prior's pricing (EI scaled by the share of the budget a trial leaves) ranks alike in
        # both methods. On the real clock it read each method's own measured durations, and a
        # loaded machine reordered two close proposals (seen once in CI).
        grid = Grid(tasks=["hpobench:australian"], methods=["asap", "prior", "tpe", "random"], seeds=1,
                    trials=6, time_s=4 * 3600, time_scale=0.0, clock="virtual",
                    db=str(tmp_path / "d.db"), base_url=server.base_url, model="fake")
        ledger = run_grid(grid)
    finally:
        server.stop()
    from asap.evals.decisions import decision_quality
    rows = list(ledger.db["eval_cells"].rows_where("status = 'done'"))
    quality = decision_quality(ledger, rows)
    q = quality["asap"]
    assert set(quality) == {"asap", "prior"} and q.rounds == 6  # prior: the graph, no LLM
    # From round 4 (the prior scores from 3 trials) both trained A; the start-up rounds
    # trained the most central proposal, which need not be listed first.
    assert quality["prior"].by["asap"][3:] == quality["prior"].by["always A"][3:]
    assert q.by["asap"][3:] == q.by["always A"][3:]  # it picked A every round it decided
    assert all(0 <= b <= 1 and 1 <= r <= 4 for b, r in q.by["random"])
    # Round 1 trains the start-up pick while the LLM reads the prompt (a plan), rounds 2-3 the
    # fallback's (llm_after), round 4 the answer asked in round 1. After it, rounds its plan
    # covers (when the self-tuner lengthened it) are the plan's; then the price decides each:
    # the call's measured latency against these trials (~2-4 simulated s). Priced dear (the LLM
    # never departed from the prior), the prior decides; priced cheap, the LLM. An llm_price
    # event says which, and why, whenever the verdict changes.
    asap_study = ledger.open_study("hpobench-australian.asap.s0")
    by = [e["detail"]["by"] for e in asap_study.events("decision")]
    assert by[:4] == ["plan", "prior", "prior", "llm"] and set(by[4:]) <= {"plan", "llm",
                                                                         "prior"}, by
    verdicts = [e["detail"] for e in asap_study.events("llm_price")]
    assert verdicts and all("of a trial" in v["why"] for v in verdicts), verdicts
    if "llm" in by[4:]:  # the critical path or speculation asked: a cheap verdict said so
        assert any(v["ask"] for v in verdicts), (by, verdicts)
    if "prior" in by[4:]:  # the prior decided: a dear verdict said why
        assert any(not v["ask"] and "has not yet beaten the prior" in v["why"]
                   for v in verdicts), (by, verdicts)
    assert q.llm_rounds == by.count("llm") and q.planned == by.count("plan")
    # Picking A every round is the prior's pick: asap then trains exactly what "prior" trains,
    # up to the first round decided speculatively and kept (its A was ranked on the predicted
    # value of the trial before it, not the real one: whether one is kept depends on timing).
    trained = {m: [t.config for t in ledger.open_study(f"hpobench-australian.{m}.s0").trials()]
               for m in ("asap", "prior")}
    kept = [e["detail"]["round"] for e in ledger.open_study("hpobench-australian.asap.s0")
            .events("speculation") if e["detail"]["accepted"]]
    same = min(kept) - 1 if kept else 6
    assert trained["asap"][:same] == trained["prior"][:same] and len(trained["asap"]) == 6
    assert same >= 3  # the start-up rounds are never speculative
    text = write_report(ledger, tmp_path / "out").read_text()
    assert "## Decision quality" in text and "| asap | 6 | bandit |" in text
    assert "## Targets (wall-clock-centered decisions)" in text
    assert "asap <= the best single tool on 1 of 1 tasks" in text or "on 0 of 1 tasks" in text
    assert "trial axis: asap's mean regret" in text and "rounds the LLM decided" in text


def test_the_real_clock_report_states_its_targets(tmp_path):
    from fakes import FakeOpenAI
    server = FakeOpenAI().start()
    try:
        grid = Grid(tasks=["hpobench:australian"], methods=["asap", "prior", "tpe"], seeds=1,
                    trials=4, time_s=120, time_scale=0.0, db=str(tmp_path / "r.db"),
                    base_url=server.base_url, model="fake")
        ledger = run_grid(grid)
    finally:
        server.stop()
    text = write_report(ledger, tmp_path / "out").read_text()
    assert "## Targets" in text and "asap <= the best single tool (tpe)" in text
    assert "of the 1 tasks asap ran" in text and "asap 0." in text and "prior 0." in text


def test_baselines_keep_n_trials_in_flight(tmp_path, monkeypatch):
    """--workers 2: every baseline runs its budget with two trials at a time: the first two
    trials of ``parallel:rendezvous`` succeed only if they meet."""
    import dataclasses
    from pathlib import Path

    from asap.evals.methods import METHODS, Cell
    from asap.tools.workloads import resolve
    userwl = Path(__file__).parents[1] / "userwl"
    monkeypatch.syspath_prepend(str(userwl))
    monkeypatch.chdir(userwl)  # the workers import the objective's module from here
    wl = resolve("parallel:rendezvous", space_file=userwl / "space.yaml")
    for method in ("tpe", "portfolio", "prior"):
        barrier = tmp_path / method
        barrier.mkdir()
        cell = Cell("parallel:rendezvous", method, 0, trials=4, time_s=120, time_scale=0.0,
                    db=str(tmp_path / "w.db"), workers=2)
        METHODS[method](cell, dataclasses.replace(wl, kwargs={"barrier": str(barrier)}))
        trials = Ledger(cell.db).open_study(cell.study).trials()
        assert [t.status for t in trials] == ["complete"] * 4, [t.error for t in trials]
        assert len({t.config["x"] for t in trials}) == 4
    grid = Grid(tasks=["hpobench:australian"], methods=["tpe"], workers=2)
    assert "2 trials in flight per run" in grid.describe()
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        Grid(tasks=["hpobench:australian"], methods=["tpe"], workers=0)


def test_a_virtual_clock_grid_reports_both_axes(tmp_path):
    """Runs go on until their simulated budget (the trial cap guards the real cost); the report
    reads regret at N trials and at each simulated budget, time-to-target against each single
    tool, and states the wall-clock targets as met or missed."""
    from fakes import FakeOpenAI
    server = FakeOpenAI().start()
    try:
        grid = Grid(tasks=["hpobench:australian"], methods=["asap", "prior", "tpe", "random"],
                    seeds=2, trials=20, time_s=1800.0, time_scale=0.0, clock="virtual",
                    at_trials=5, db=str(tmp_path / "v.db"), base_url=server.base_url,
                    model="fake")
        assert "on the virtual clock: each run until its simulated budget is spent (30 min " \
               "on hpobench" in grid.describe()
        ledger = run_grid(grid)
    finally:
        server.stop()
    cells = collect(ledger)
    assert {c.clock for c in cells} == {"virtual"} and len(cells) == 8
    for c in cells:  # a run ends at its budget or its cap, on simulated time
        assert c.trials == 20 or c.wall_s >= 1800.0 - 120.0
        assert all(t <= 1800.0 + 1e-6 for t in c.ends) and c.ends == sorted(c.ends)
        assert c.wall_s >= c.ends[-1]
    assert max(c.wall_s for c in cells) > 600.0  # simulated minutes, in seconds of real time
    text = write_report(ledger, tmp_path / "out", at_trials=grid.at_trials).read_text()
    assert "## Both axes: trials and simulated wall-clock" in text
    assert "| method | regret @5 trials, 1 tasks | simulated hours for 5 trials, HPOBench |" \
           " regret after 15 min, HPOBench | regret after 1 h, HPOBench |" in text
    assert "### Regret after 5 trials" in text
    assert "### Regret after simulated budget level 1 (hpobench 15 min)" in text
    assert "### Time to reach `tpe`'s median final quality" in text
    assert "### Time to reach `random`'s median final quality" in text
    assert "- budget level 1 (15 min): asap <= the best single tool on" in text
    assert "- trial axis: asap's mean regret @5 trials" in text
    assert (tmp_path / "out" / "regret_vs_simulated_time.png").stat().st_size > 0
    assert not (tmp_path / "out" / "rank_vs_time.png").exists()


def test_optunas_gp_sampler_runs_as_a_peer_with_its_own_defaults(tmp_path):
    """``optuna-gp`` is Optuna's GPSampler as a user runs it: its study's own start-up (the
    defaults' 10 random configurations, the same as a standalone study at the seed) and then
    its model, every trial through asap's ledger and table lookups."""
    import optuna

    from asap.evals.methods import METHODS, Cell
    from asap.tools.hpo.optuna_tool import suggest_config
    from asap.tools.workloads import resolve
    cell = Cell("hpobench:australian", "optuna-gp", 3, trials=12, time_s=1e9, time_scale=0.0,
                db=str(tmp_path / "gp.db"), clock="virtual")
    wl = resolve(cell.task, time_scale=0.0)
    METHODS["optuna-gp"](cell, wl)
    trials = Ledger(cell.db).open_study(cell.study).trials()
    assert [t.status for t in trials] == ["complete"] * 12
    assert {t.tool for t in trials} == {"optuna-peer:GPSampler"}
    alone = optuna.create_study(direction="maximize", sampler=optuna.samplers.GPSampler(seed=3))
    for t in trials[:10]:
        asked = alone.ask()
        assert suggest_config(wl.space, asked) == t.config
        alone.tell(asked, t.value)
    assert "optuna-gp" in axes.SINGLE and "optuna-gp" in PROFILES["dev"]["methods"]


def test_smac_runs_as_a_peer_and_says_how_to_install_it_when_missing(tmp_path, monkeypatch):
    """``smac`` is SMAC3's HPO facade with its defaults, told every result (its later
    configurations come from its model), over a conditional space (on a choice, and on a
    number's bound) with a choice of None and stepped numbers; without SMAC3 a grid asking for it stops before its first cell, naming the
    install command."""
    import importlib.util

    from asap.evals import smac_peer
    from asap.evals.methods import METHODS, Cell
    from asap.tools.hpo.space import Space
    from asap.tools.workloads import resolve
    cell = Cell("hpobench:australian", "smac", 1, trials=16, time_s=1e9, time_scale=0.0,
                db=str(tmp_path / "s.db"), clock="virtual")
    wl = resolve(cell.task, time_scale=0.0)
    METHODS["smac"](cell, wl)
    trials = Ledger(cell.db).open_study(cell.study).trials()
    assert [t.status for t in trials] == ["complete"] * 16 and {t.tool for t in trials} == {
        "smac:hpo"}
    assert all(wl.space.validate(t.config) == t.config for t in trials)

    space = Space.from_dict({
        "kind": {"type": "categorical", "choices": [None, "a"]},
        "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25,
              "when": {"parent": "kind", "in": ["a"]}},
        "n": {"type": "int", "low": 2, "high": 10, "step": 2},
        "y": {"type": "float", "low": 0.0, "high": 1.0, "when": {"parent": "n", "ge": 6}}})
    asker = smac_peer.SmacAsker(space, "minimize", 12, seed=0)
    try:
        for _ in range(12):
            config, info = asker.ask()
            assert space.validate(config) == config and ("x" in config) == (config["kind"] == "a")
            assert ("y" in config) == (config["n"] >= 6)
            asker.tell(info, None if config["n"] == 10 else config["n"])
    finally:
        asker.close()

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "smac" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'asap-hpo\[smac\]'"):
        Grid(tasks=["hpobench:australian"], methods=["smac", "tpe"])
    assert "smac" in axes.SINGLE and "smac" in PROFILES["dev"]["methods"]


def test_the_workers_benchmark_measures_span_and_training_against_one_worker(tmp_path):
    """evals/bench_workers.py on a small grid, for real on the virtual clock: each worker count's
    runs in a ledger of its own, one worker's row its own reference (ratios 1), two workers'
    trials overlapping (a span shorter than the summed training)."""
    from rich.console import Console

    from asap.evals.bench_workers import measure, report, run_counts
    from asap.evals.results import collect

    ledgers = run_counts(["hpobench:australian"], ["cmaes"], seeds=2, trials=6, counts=[1, 2],
                         folder=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("w*.db")) == ["w1.db", "w2.db"]
    two = [measure(ledgers[2], c, 2) for c in collect(ledgers[2])]
    assert len(two) == 2 and all(r["span"] < r["train"] and 0 < r["busy"] <= 1 for r in two)
    console = Console(record=True, width=250)
    console.print(report(ledgers, [1, 2]))
    rows = [line for line in console.export_text().splitlines() if "cmaes" in line]
    assert len(rows) == 3 and "1.00 / 1.00 / 1.00 / 1.00" in rows[0] and "<= 0.62" in rows[1]
    one = [measure(ledgers[1], c, 1) for c in collect(ledgers[1])]
    totals = sum(r["span"] for r in two) / sum(r["span"] for r in one)  # the summed spans
    span_cell = next(cell for cell in rows[1].split("│") if cell.count("/") == 3)
    assert span_cell.split("/")[3].strip() == f"{totals:.2f}"
    # The floor: one worker's seed 0 against its seed 1 and back, the ratios r and 1/r.
    assert "1, next seed" in rows[2]
    r = one[0]["span"] / one[1]["span"]
    span_cell = next(cell for cell in rows[2].split("│") if cell.count("/") == 3)
    assert [c.strip() for c in span_cell.split("/")][1::2] == [f"{(r + 1 / r) / 2:.2f}", "1.00"]


def test_a_missed_task_says_whether_asap_is_behind_beyond_the_noise():
    """Where asap misses a budget level's task, the target line gives asap minus that task's
    best single tool, paired by seed, with its CI: a steady gap is behind beyond the noise, a
    gap that changes sign from seed to seed is not."""
    from types import SimpleNamespace

    from asap.evals.axes import _behind

    def runs(method, task, values):
        return {(method, task): [SimpleNamespace(seed=i, task=task, r=v)
                                 for i, v in enumerate(values)]}

    groups = {**runs("asap", "steady", [0.3, 0.4, 0.5, 0.6]),
              **runs("cmaes", "steady", [0.1, 0.2, 0.3, 0.4]),
              **runs("tpe", "steady", [0.2, 0.3, 0.4, 0.5]),
              **runs("asap", "noisy", [0.5, 0.1, 0.6, 0.2]),
              **runs("tpe", "noisy", [0.1, 0.5, 0.2, 0.5])}
    mean = {k: sum(c.r for c in g) / len(g) for k, g in groups.items()}
    text = _behind(groups, ["steady", "noisy"], ["cmaes", "tpe"], mean, lambda c: c.r)
    assert "steady +0.2000 [+0.2000, +0.2000] against cmaes" in text  # the best one there
    assert "noisy +0.0250 [" in text and "against tpe" in text
    assert text.endswith("(behind beyond the noise on 1).")
    assert _behind(groups, [], ["cmaes"], mean, lambda c: c.r) == ""


def test_a_budget_levels_verdict_names_the_part_of_the_target_it_missed():
    """The level's line says which half of the target failed: too few tasks at or under the
    best single tool, or another method (the prior, say) with the best mean rank."""
    from asap.evals.axes import targets_md
    from asap.evals.results import CellResult

    def cell(method, task, seed, value):  # a run whose incumbent is ``value`` from the start
        return CellResult(id=f"{task}.{method}.s{seed}", task=task, method=method, seed=seed,
                          maximize=True, time_budget_s=14400.0, wall_s=14400.0, trials=40,
                          by_time=[(1.0, value)], by_trial=[(1, value)], optimum=1.0, worst=0.0)

    tasks = [f"hpobench:{d}" for d in ("australian", "car", "credit_g", "kc1")]

    def level_one(values: dict[str, list[float]]) -> str:  # each method's value per task
        cells = [cell(m, t, s, v[i]) for m, v in values.items() for i, t in enumerate(tasks)
                 for s in range(2)]
        return next(line for line in targets_md(cells, at_trials=40)
                    if line.startswith("- budget level 1"))

    values = {"asap": [0.9, 0.9, 0.9, 0.5], "prior": [0.95, 0.95, 0.95, 0.95],
              "tpe": [0.8, 0.8, 0.8, 0.8]}
    first = level_one(values)
    assert "asap <= the best single tool on 3 of 4 tasks" in first
    assert "(missed: 3 of 4 tasks, not 4 and prior has the best mean rank; the target: >= 4 " \
           "of 4 tasks and the best mean rank)." in first
    values["asap"][3] = 0.99  # now at or under tpe everywhere, first on one task only
    assert "(missed: prior has the best mean rank;" in level_one(values)
    values["asap"] = [0.99] * 4
    assert "(met; the target: >= 4 of 4 tasks and the best mean rank)." in level_one(values)
