"""The contract every optimizer adapter passes, against the real Optuna and Nevergrad."""

import json
import math

import pytest
from conftest import toy_objective
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asap.tools.hpo.optuna_tool import OptunaOptimizer
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.hpo.space import Space
from asap.tools.ledger.store import Ledger

ALL = [("optuna", a) for a in OptunaOptimizer.algorithms] + [
    ("nevergrad", a) for a in ("NGOpt", "CMA", "DE", "TwoPointsDE", "PSO", "OnePlusOne")]
# Random search and QMC do not learn by design; every other tool must react to history.
LEARNERS = [t for t in ALL if t[1] not in ("random", "qmc")]


def _fill(study, n, seed=1, region=None):
    """Record ``n`` finished foreign trials (proposed by 'other'), most near ``region``."""
    import random
    rng = random.Random(seed)
    for i in range(n):
        x = region["x"] + rng.gauss(0, 0.3) if region else rng.uniform(-5, 5)
        lr = 10 ** (math.log10(region["lr"]) + rng.gauss(0, 0.2)) if region else 10 ** rng.uniform(-4, 0)
        cfg = {"x": max(-5, min(5, x)), "lr": max(1e-4, min(1.0, lr)), "n_layers": 1 + i % 4,
               "optimizer": "adam"}
        if cfg["n_layers"] >= 3:
            cfg["units_l3"] = 32
        tid = study.start_trial(cfg, tool="other")
        if i % 7 == 6:
            study.finish_trial(tid, status="failed", error="synthetic failure")
        else:
            study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})


@pytest.mark.parametrize("library, algorithm", ALL)
def test_suggestions_are_valid_native_types(ledger, toy_space, library, algorithm):
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    _fill(study, 12)
    configs = Portfolio(study).ask(library, algorithm, n=4)
    assert len(configs) == 4
    for c in configs:
        assert toy_space.validate(c) == c
        assert all(type(v) in (int, float, str) for v in c.values())


@pytest.mark.parametrize("library, algorithm", LEARNERS)
def test_foreign_trials_change_proposals(tmp_path, toy_space, library, algorithm):
    fresh = Ledger(tmp_path / "a.db").create_study("s", toy_space, metric="loss", direction="minimize")
    taught = Ledger(tmp_path / "b.db").create_study("s", toy_space, metric="loss", direction="minimize")
    _fill(taught, 30, region={"x": 2.0, "lr": 0.01})
    before = Portfolio(fresh, seed=3).ask(library, algorithm, n=6)
    portfolio = Portfolio(taught, seed=3)
    after = portfolio.ask(library, algorithm, n=6)
    assert portfolio.optimizer(library, algorithm).n_told == 30
    assert before != after


@pytest.mark.parametrize("library, algorithm", [
    ("optuna", "tpe"), ("nevergrad", "NGOpt"), ("nevergrad", "OnePlusOne"), ("nevergrad", "DE")])
def test_learning_moves_towards_the_good_region(tmp_path, toy_space, library, algorithm):
    study = Ledger(tmp_path / "a.db").create_study("s", toy_space, metric="loss", direction="minimize")
    _fill(study, 40, region={"x": 2.0, "lr": 0.01})
    blind = Ledger(tmp_path / "b.db").create_study("s", toy_space, metric="loss", direction="minimize")
    taught = Portfolio(study, seed=0).ask(library, algorithm, n=10)
    naive = Portfolio(blind, seed=0).ask(library, algorithm, n=10)
    mean = lambda cs: sum(toy_objective(c) for c in cs) / len(cs)  # noqa: E731
    assert mean(taught) < mean(naive)


def test_own_proposal_is_told_back_and_state_is_rebuilt_on_reopen(tmp_path, toy_space):
    path = tmp_path / "l.db"
    study = Ledger(path).create_study("s", toy_space, metric="loss", direction="minimize")
    _fill(study, 10)
    portfolio = Portfolio(study, seed=5)
    opt = portfolio.optimizer("optuna", "tpe")
    cfg = opt.ask(1)[0]
    tid = study.start_trial(cfg, tool="optuna:tpe")
    study.report(tid, 1, 3.0)
    study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})
    assert portfolio.sync() == 1 and opt.n_told == 11
    own = opt.study.trials[-1]  # told through the pending ask, not re-added as a foreign trial
    assert own.params == cfg and own.intermediate_values == {1: 3.0}
    assert len(opt.study.trials) == 11

    # A new process (a new Portfolio over the reopened ledger) rebuilds the same knowledge.
    reopened = Portfolio(Ledger(path).open_study("s"), seed=5).optimizer("optuna", "tpe")
    assert reopened.n_told == 11
    values = lambda o: sorted((t.state.name, t.value or 0.0) for t in o.study.trials)  # noqa: E731
    assert values(reopened) == values(opt)


def test_unknown_algorithm(ledger, toy_space):
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    with pytest.raises(ValueError, match="unknown optuna algorithm 'bogus'"):
        Portfolio(study).ask("optuna", "bogus")
    with pytest.raises(ValueError, match="unknown library"):
        Portfolio(study).ask("hyperopt", "tpe")


@st.composite
def spaces(draw):
    params, names = [], []
    for i in range(draw(st.integers(1, 5))):
        name = f"p{i}"
        kind = draw(st.sampled_from(["float", "int", "categorical"]))
        if kind == "float":
            log = draw(st.booleans())
            low = draw(st.floats(1e-5, 10) if log else st.floats(-100, 100))
            spec = {"type": "float", "low": low, "high": low + draw(st.floats(0, 100)), "log": log}
        elif kind == "int":
            low, step = draw(st.integers(-50, 50)), draw(st.integers(1, 4))
            spec = {"type": "int", "low": low, "high": low + step * draw(st.integers(0, 20)), "step": step}
        else:
            spec = {"type": "categorical",
                    "choices": draw(st.lists(st.sampled_from(["a", "b", "c", 1, 2.5, True]),
                                             min_size=1, max_size=4, unique_by=repr))}
        if names and draw(st.booleans()):
            parent = draw(st.sampled_from(params))
            if parent["type"] == "categorical":
                spec["when"] = {"parent": parent["name"], "in": parent["choices"][:1]}
            else:
                spec["when"] = {"parent": parent["name"], "ge": parent["low"]}
        params.append({"name": name, **spec})
        names.append(name)
    return Space(params=params)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(space=spaces(), tool=st.sampled_from(ALL), seed=st.integers(0, 100))
def test_every_suggestion_validates_on_random_spaces(tmp_path_factory, space, tool, seed):
    ledger = Ledger(tmp_path_factory.mktemp("h") / "l.db")
    study = ledger.create_study("s", space, metric="m", direction="maximize")
    portfolio = Portfolio(study, seed=seed)
    for i, cfg in enumerate(portfolio.ask(*tool, n=3)):
        assert space.validate(cfg) == cfg
        tid = study.start_trial(cfg, tool="x")
        study.finish_trial(tid, status="complete", metrics={"m": float(i)})
    for cfg in portfolio.ask(*tool, n=2):  # after learning from those trials
        assert space.validate(cfg) == cfg


def test_the_panel_never_offers_a_configuration_the_study_has_run(tmp_path, toy_space):
    from asap.tools.types import config_key
    study = Ledger(tmp_path / "p.db").create_study("p", toy_space, metric="loss",
                                                   direction="minimize")
    portfolio = Portfolio(study, seed=3)
    for _ in range(12):  # CMA-ES and DE converge on a toy space: repeats get asked again
        offers = portfolio.panel_offers()
        keys = [config_key(c) for _, c in offers]
        assert len(set(keys)) == len(keys) and not set(keys) & study.config_keys()
        tool, config = offers[0]
        tid = study.start_trial(config, tool=tool, allow_repeat=False)
        study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(config)})
        portfolio.sync()


def test_a_resumed_study_continues_each_tools_sequence(tmp_path, toy_space):
    study = Ledger(tmp_path / "r.db").create_study("r", toy_space, metric="loss",
                                                   direction="minimize")
    first = Portfolio(study, seed=0)
    for _ in range(2):
        config = first.ask("optuna", "tpe")[0]
        tid = study.start_trial(config, tool="optuna:tpe")
        study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(config)})
    resumed = Portfolio(study, seed=0)  # a new process, the same --seed
    again = resumed.ask("optuna", "tpe", 2)
    assert not {json.dumps(c) for c in again} & study.config_keys()


def test_a_one_parameter_space_runs_every_round_and_a_failing_tool_is_dropped(ledger):
    """Nevergrad's NGOpt raised inside its metamodel at the 13th trial of a one-parameter space,
    and took the session down with it; a failing tool now leaves the round, logged."""
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    study = ledger.create_study("one", space, metric="score", direction="maximize")
    portfolio = Portfolio(study, seed=0)
    for i in range(30):
        offers = portfolio.panel_offers()
        assert offers and all(space.validate(c) == c for _, c in offers)
        tool, config = offers[i % len(offers)]
        tid = study.start_trial(config, tool=tool)
        study.finish_trial(tid, status="complete", metrics={"score": -(config["x"] - 0.3) ** 2})
    failed = [e["detail"] for e in study.events("tool_failed")]
    assert {f["tool"] for f in failed} == set(portfolio.broken)
    assert len(failed) == len(portfolio.broken)  # logged once, then left out of every round


def test_a_tool_that_raises_is_left_out_of_the_round(ledger, toy_space, monkeypatch):
    study = ledger.create_study("boom", toy_space, metric="loss", direction="minimize")
    portfolio = Portfolio(study, seed=0)
    real = portfolio.ask

    def ask(library, algorithm, n=1):
        if algorithm == "DE":
            raise TypeError("only 0-dimensional arrays can be converted to Python scalars")
        return real(library, algorithm, n)
    monkeypatch.setattr(portfolio, "ask", ask)
    tools = [t for t, _ in portfolio.panel_offers()]
    assert "nevergrad:DE" not in tools and len(tools) == 3
    assert portfolio.broken["nevergrad:DE"].startswith("TypeError: only 0-dimensional")
    assert [e["detail"]["tool"] for e in study.events("tool_failed")] == ["nevergrad:DE"]
    assert len(portfolio.panel_offers()) == 3  # not asked again


def test_tool_argument_types_name_every_algorithm():
    """The suggest tools' typed arguments (what an LLM may ask for) list exactly the algorithms
    the adapters implement."""
    from asap.tools.hpo.nevergrad_tool import NevergradOptimizer
    from asap.tools.hpo_tools import NgOptimizer, Sampler

    assert set(Sampler.__args__) == set(OptunaOptimizer.algorithms)
    assert set(NgOptimizer.__args__) == set(NevergradOptimizer.algorithms)


def test_graph_import_leaves_the_heavy_libraries_for_later():
    """Importing the graphs (what ``langgraph dev`` does at start) loads neither torch nor
    Nevergrad: those load when a session first needs them."""
    import subprocess
    import sys
    code = ("import sys, asap.graphs.app; "
            "print(sorted(m for m in ('torch', 'nevergrad', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_optuna_sees_other_workers_running_trials_and_no_stale_asks(tmp_path, toy_space):
    """N workers: a trial another tool started is a RUNNING trial in each Optuna study (TPE's
    constant liar steers away from it), told its value when it lands; the proposals a round
    asked and did not train are closed (FAIL), not left running for the liar to count."""
    from optuna.trial import TrialState
    study = Ledger(tmp_path / "q.db").create_study("q", toy_space, metric="loss",
                                                   direction="minimize")
    portfolio = Portfolio(study, seed=1)
    offers = portfolio.panel_offers()
    tool, config = offers[1]  # CMA-ES's proposal trains; TPE's (offers[0]) does not
    tid = study.start_trial(config, tool=tool)
    portfolio.panel_offers()  # the next round, with that trial in flight
    tpe = portfolio.optimizer("optuna", "tpe").study.get_trials(deepcopy=False)
    running = [t for t in tpe if t.state == TrialState.RUNNING]
    assert [t.params for t in running[:1]] == [config]  # the other worker's trial...
    assert len(running) == 2  # ...and this round's own TPE ask, nothing else
    assert [t.params for t in tpe if t.state == TrialState.FAIL] == [offers[0][1]]
    study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(config)})
    portfolio.sync()
    told = [t for t in portfolio.optimizer("optuna", "tpe").study.get_trials(deepcopy=False)
            if t.params == config]
    assert [(t.state, t.value) for t in told] == [(TrialState.COMPLETE, toy_objective(config))]



def test_a_fork_made_while_a_trial_trains_leaves_the_real_tools_as_they_were(ledger, toy_space):
    """Speculation forks the tools while a trial trains; whether it does (timing) must not
    change what the real tools propose once the trial lands."""
    import dataclasses

    def rounds(name: str, fork: bool) -> list:
        study = ledger.create_study(name, toy_space, metric="loss", direction="minimize")
        tools = Portfolio(study, seed=3)
        for _ in range(4):
            tool, config = tools.panel_offers()[0]
            tid = study.start_trial(config, tool=tool)
            if fork:  # the speculative branch, before the trial lands
                guess = dataclasses.replace(study.trial(tid), id=-1, status="complete",
                                            value=1.0, metrics={"loss": 1.0})
                tools.fork([guess]).panel_offers()
            study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(config)})
            tools.sync()
        return tools.panel_offers()

    assert rounds("with", fork=True) == rounds("without", fork=False)


def test_the_tools_have_heard_every_result_when_they_next_propose(ledger, toy_space):
    """A landed trial is told when the tools are next asked (the round that lands it does not
    tell them: with proposals asked ahead, that is while the next trial trains), and never
    later than that."""
    study = ledger.create_study("s", toy_space, metric="loss", direction="minimize")
    portfolio = Portfolio(study)
    portfolio.panel_offers()  # every panel tool created
    cfg = portfolio.ask("optuna", "tpe")[0]
    tid = study.start_trial(cfg, tool="optuna:tpe")
    study.finish_trial(tid, status="complete", metrics={"loss": toy_objective(cfg)})
    portfolio.panel_offers()
    assert portfolio.sync() == 0  # panel_offers told it first


def test_a_log_range_too_narrow_for_nevergrads_log_scale_is_searched(tmp_path):
    """A log float whose bounds are a few ulps apart: Nevergrad's Log made its own bounds
    infinite there (the optimizer could not be made, found by the test above); such a range is
    searched on the linear scale, every suggestion inside it."""
    space = Space(params=[{"name": "a", "type": "float", "low": 1e-05,
                           "high": 1.0000000000000003e-05, "log": True},
                          {"name": "b", "type": "float", "low": 0.0, "high": 1.0}])
    study = Ledger(tmp_path / "n.db").create_study("n", space, metric="m", direction="maximize")
    portfolio = Portfolio(study, seed=0)
    for tool in [t for t in ALL if t[0] == "nevergrad"]:
        for cfg in portfolio.ask(*tool, n=2):
            assert space.validate(cfg) == cfg


def test_ngopt_imports_cma_without_pyplot_and_pyplot_still_imports_after():
    """NGOpt's first ask imports cma, whose shortcuts import pyplot (before a study's first
    trial); asap imports cma without it, and the process can still plot."""
    import subprocess
    import sys
    script = """
import sys
from asap.tools.hpo.nevergrad_tool import NevergradOptimizer
from asap.tools.hpo.space import Space
space = Space.from_dict({"x": {"type": "float", "low": -5, "high": 5},
                         "k": {"type": "categorical", "choices": ["a", "b"]}})
opt = NevergradOptimizer(space, "minimize", "NGOpt", seed=0)
assert opt.ask() and opt.ask()
assert "cma" in sys.modules and "matplotlib.pyplot" not in sys.modules, sorted(sys.modules)
import matplotlib.pyplot, cma
assert callable(cma.plot) and callable(matplotlib.pyplot.figure)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_pyplot_block_holds_only_on_the_thread_that_imports_cma():
    import threading

    from asap.tools.hpo.nevergrad_tool import _NoPyplotOnThisThread
    finder = _NoPyplotOnThisThread()
    with pytest.raises(ImportError, match="pyplot"):
        finder.find_spec("matplotlib.pyplot", None)
    assert finder.find_spec("matplotlib.figure", None) is None
    seen = []
    other = threading.Thread(target=lambda: seen.append(finder.find_spec("matplotlib.pyplot", None)))
    other.start()
    other.join()
    assert seen == [None]


def test_the_panels_libraries_load_on_a_thread_of_their_own():
    """A new process imports Nevergrad (and cma, without pyplot) on the loading thread, and an
    optimizer made afterwards finds them imported."""
    import subprocess
    import sys
    script = """
import sys, threading
from asap.tools.hpo.panel import PANEL
from asap.tools.hpo.portfolio import load_in_background
assert "nevergrad" not in sys.modules
thread = load_in_background(PANEL)
assert thread is not threading.current_thread() and not thread.daemon
thread.join()
assert "nevergrad" in sys.modules and "cma" in sys.modules
assert "matplotlib.pyplot" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_design_tool_proposes_beside_the_panel_in_the_initial_design_only(ledger):
    """``design`` (Sobol, ``optuna:qmc``) joins the round until 10 trials per numeric parameter
    have finished, then the panel proposes alone; a space of categories alone has no initial
    design, and a tool already in the panel is not asked twice."""
    from asap.tools.hpo.panel import PANEL, TOOLS
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0},
                             "k": {"type": "categorical", "choices": ["a", "b"]}})
    study = ledger.create_study("d", space, metric="score", direction="maximize")
    sobol = TOOLS["optuna:qmc"]
    portfolio = Portfolio(study, seed=0, design=sobol)
    assert portfolio.fork([]).round_tools() == (*PANEL, sobol)  # a speculative fork too
    for i in range(10):
        assert portfolio.round_tools() == (*PANEL, sobol)
        offers = portfolio.panel_offers()
        assert "optuna:qmc" in [t for t, _ in offers]
        tid = study.start_trial(offers[-1][1], tool=offers[-1][0])
        study.finish_trial(tid, status="complete", metrics={"score": float(i)})
    assert portfolio.round_tools() == PANEL  # 10 trials per numeric parameter: the design is over
    assert "optuna:qmc" not in [t for t, _ in portfolio.panel_offers()]
    cats = ledger.create_study("c", Space.from_dict(
        {"k": {"type": "categorical", "choices": ["a", "b", "c"]}}), metric="score",
        direction="maximize")
    assert Portfolio(cats, design=sobol).round_tools() == PANEL
    assert Portfolio(study, panel=(sobol,), design=sobol).round_tools() == (sobol,)
