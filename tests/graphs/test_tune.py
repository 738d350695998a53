"""The session around the graph: the fallback path offline, the speculation policy."""

import dataclasses
import json

from fakes import australian, run_graph

from asap.agent.guard import fallback
from asap.agent.prior.cost import per_second
from asap.agent.prior.fit import off_centre
from asap.agent.prior.ranking import SHOWN
from asap.agent.speculation import speculation_mode


def test_without_an_llm_the_prior_decides_every_round(tmp_path):
    study, ctx = australian(tmp_path, None, trials=4)
    state = run_graph(ctx)
    assert len(study.trials(status="complete")) == 4
    assert not state.get("fallbacks") and not study.events("fallback")  # nothing failed
    assert [e["detail"]["by"] for e in study.events("decision")] == ["prior"] * 4
    first = study.events("decision")[0]["detail"]  # nothing known yet: the most central
    assert first["trained"] == min(first["offers"], key=lambda o: off_centre(study.space, o[1]))
    log = state["log"].rows
    assert len(log) == 4 and log[0].startswith("Round 1: ")


def test_before_the_prior_scores_the_fallback_takes_the_most_central_proposal(ledger,
                                                                              toy_space):
    """Nothing is known of values or costs yet: a typical configuration, not an extreme one."""
    study = ledger.create_study("r", toy_space, metric="loss", direction="minimize")
    base = {"lr": 0.1, "n_layers": 1, "optimizer": "adam"}  # x in [-5, 5], lr log [1e-4, 1]
    proposals = [("optuna:tpe", {**base, "x": 4.9}), ("nevergrad:DE", {**base, "x": 0.3}),
                 ("optuna:cmaes", {**base, "x": -0.3, "lr": 1e-4})]
    assert fallback(study, proposals) == proposals[1]
    assert fallback(study, proposals, scored=True) == proposals[0]  # scored: the prior's A


def test_the_start_up_pick_is_not_a_near_twin_of_a_trial_already_run_or_running(ledger,
                                                                             toy_space):
    """The tools propose around the centre too: the central pick again would learn nothing."""
    study = ledger.create_study("t", toy_space, metric="loss", direction="minimize")
    base = {"lr": 0.1, "n_layers": 1, "optimizer": "adam"}
    proposals = [("nevergrad:NGOpt", {**base, "x": 0.05}), ("optuna:cmaes", {**base, "x": 3.0}),
                 ("optuna:tpe", {**base, "x": -4.0})]
    running = study.start_trial({**base, "x": 0.0}, tool="nevergrad:NGOpt")  # still in flight
    assert fallback(study, proposals) == proposals[1]  # the next most central
    study.finish_trial(running, status="complete", metrics={"loss": 4.0})
    study.start_trial({**base, "x": 2.9}, tool="optuna:cmaes")
    assert fallback(study, proposals) == proposals[2]
    study.start_trial({**base, "x": -3.95}, tool="optuna:tpe")
    assert fallback(study, proposals) == proposals[0]  # all are twins: the most central


def test_auto_speculation_only_when_training_and_llm_do_not_share_the_cpu():
    import torch

    from asap.agent.config import TuneConfig
    local = TuneConfig(workload="digits-mlp")
    assert speculation_mode(local) == ("threshold" if torch.cuda.is_available() else "off")
    # An LLM on this machine (the chat passes the embedded server's URL) shares the cores too;
    # one on another machine does not.
    on_cpu = "threshold" if torch.cuda.is_available() else "off"
    assert speculation_mode(TuneConfig(workload="digits-mlp", base_url="http://127.0.0.1:8000/v1")
                            ) == on_cpu
    assert speculation_mode(TuneConfig(workload="digits-mlp",
                                       base_url="http://gpu-box.internal:8000/v1")) == "threshold"
    assert speculation_mode(TuneConfig(workload="hpobench:australian", time_scale=0.1)
                            ) == "threshold"
    # No training time to hide a speculative call behind: it would only double the LLM's work.
    assert speculation_mode(TuneConfig(workload="hpobench:australian")) == "off"
    assert speculation_mode(TuneConfig(workload="digits-mlp", speculation="off",
                                       base_url="http://127.0.0.1:8000/v1")) == "off"


def test_once_the_prior_scores_a_round_without_an_llm_it_trains_its_pick(tmp_path):
    study, ctx = australian(tmp_path, None, trials=5)
    run_graph(ctx)
    decisions = [e["detail"] for e in study.events("decision")]
    assert [d["trial"] for d in decisions] == list(range(5))
    assert all(d["by"] == "prior" for d in decisions)
    unscored, scored = decisions[:3], decisions[3:]  # the prior needs three finished trials
    assert all(s is None for d in unscored for s in d["scores"])
    for d in scored:
        assert all(s is not None for s in d["scores"]) and d["trained"] == d["offers"][0]
        # offered in the prior's order (the default weight 0, no time budget: EI alone)
        key = per_second([s[2] for s in d["scores"]], [s[3] for s in d["scores"]], 0.0)
        assert key == sorted(key, reverse=True) and len(key) == SHOWN


def test_llm_off_reaches_no_endpoint_and_the_prior_decides(tmp_path, capsys):
    """--llm off: a dead --base-url is never asked; every round is the prior's pick."""
    from asap.cli.main import main
    from asap.graphs.api import run_task
    from asap.tools.ledger.store import Ledger
    db = tmp_path / "off.db"
    assert main(["tune", "hpobench:australian", "--llm", "off", "--trials", "4", "--db", str(db),
                 "--base-url", "http://127.0.0.1:9/v1", "--clock", "virtual"]) == 0
    assert "LLM: off (the panel and the prior decided every round)" in capsys.readouterr().out
    study = Ledger(db).open_study("hpobench-australian")
    assert len(study.trials(status="complete")) == 4 and not study.timings("llm_call")
    assert [e["detail"]["by"] for e in study.events("decision")] == ["prior"] * 4
    assert [e["detail"]["protocol"] for e in study.events("session")] == [None]
    result = run_task("hpobench:australian", llm="off", trials=2, db=str(tmp_path / "r.db"),
                      isolate=False)
    assert result.complete == 2 and result.llm_calls == 0
    assert main(["tune", "hpobench:australian", "--llm", "maybe", "--db", str(db)]) == 2
    assert "llm: Input should be a valid boolean" in capsys.readouterr().err


def test_trials_count_the_studys_total_and_a_rerun_within_it_says_so(tmp_path):
    """Issue 37 (8): ``trials`` in a task is the study's total; a re-run asking for no more
    than it has runs nothing and says so (a message, ``ran`` 0), one asking for more runs the
    difference."""
    from asap.graphs.api import run_task
    from asap.graphs.callbacks import TuneCallback

    class Said(TuneCallback):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def on_message(self, text: str) -> None:
            self.lines.append(text)

    db = str(tmp_path / "total.db")
    first = run_task("hpobench:australian", llm="off", trials=3, db=db, isolate=False)
    said = Said()
    again = run_task("hpobench:australian", llm="off", trials=2, db=db, isolate=False,
                     callbacks=(said,))
    assert (first.ran, again.ran, again.trials) == (3, 0, 3)
    assert any("already has 3 finished trials" in line and "more than 3" in line
               for line in said.lines), said.lines
    assert run_task("hpobench:australian", llm="off", trials=5, db=db, isolate=False).ran == 2


def test_a_failing_mirror_never_ends_the_session(tmp_path):
    """The mirror's file turns into garbage after the second trial: every trial is still
    trained and recorded, each failed sync is a mirror_error event, the person is told once."""
    from fakes import ScriptedModel
    from langchain_core.messages import AIMessage

    from asap.agent.config import TuneConfig
    from asap.graphs.callbacks import TuneCallback
    from asap.graphs.session import tune
    from asap.tools.ledger.store import Ledger
    storage = tmp_path / "optuna.db"
    told: list[str] = []

    class Break(TuneCallback):
        def on_message(self, text):
            told.append(text)

        def on_trial_complete(self, study, trial, tool):
            if trial.number == 1:  # after this one's sync: the mirror is gone from here on
                storage.write_bytes(b"this is not a database" * 100)
    cfg = TuneConfig(workload="hpobench:australian", trials=4, db=str(tmp_path / "l.db"),
                     optuna_storage=f"sqlite:///{storage}", isolate=False, speculation="off",
                     decide="json")
    s = tune(cfg, llm=ScriptedModel(lambda m, k: AIMessage('{"action": "train", "choice": "A"}')),
             callbacks=[Break()])
    study = Ledger(tmp_path / "l.db").open_study(s["study"])
    assert s["complete"] == 4
    errors = study.events("mirror_error")
    assert len(errors) >= 2 and all(e["detail"]["reason"] for e in errors)
    assert sum("the Optuna mirror failed" in t for t in told) == 1


def test_a_small_discrete_space_never_repeats_while_a_point_is_left(tmp_path):
    """An int 1..10 with 10 trials runs all ten values (the tools' samples repeat there); a
    one-point space runs its point once and the session ends."""
    from fakes import ScriptedModel
    from langchain_core.messages import AIMessage

    from asap.agent.config import TuneConfig
    from asap.graphs.session import tune
    from asap.tools.hpo.space import Space
    from asap.tools.ledger.store import Ledger
    from asap.tools.workloads import Workload
    model = ScriptedModel(lambda m, k: AIMessage('{"action": "train", "choice": "A"}'))
    for name, spec, trials, expect in [
            ("ints", {"x": {"type": "int", "low": 1, "high": 10}}, 10, list(range(1, 11))),
            ("point", {"x": {"type": "float", "low": 0.5, "high": 0.5}}, 3, [0.5])]:
        wl = Workload(name, _square, Space.from_dict(spec), "y", "minimize")
        cfg = TuneConfig(workload=name, trials=trials, db=str(tmp_path / f"{name}.db"),
                         isolate=False, speculation="off", decide="json")
        tune(cfg, llm=model, workload=wl)
        study = Ledger(tmp_path / f"{name}.db").open_study(name)
        assert sorted(t.config["x"] for t in study.trials()) == expect
    assert study.events("space_exhausted")  # the point ran once; then nothing was left


def _square(config, report):
    return {"y": (config["x"] - 3) ** 2}


def test_a_wider_round_asks_the_cheap_tools_again_and_shows_the_priors_best(tmp_path):
    """width=2: each tool's first proposal in the panel's order, then each one's second, no
    repeats; the round shows the prior's best four (before the prior scores: the first pass)."""
    from asap.graphs.rounds import round_offers
    from asap.tools.hpo.panel import PANEL
    from asap.tools.hpo.portfolio import Portfolio
    study, ctx = australian(tmp_path, None)
    wide = Portfolio(study, seed=3, width=2)
    offers = wide.panel_offers()
    tools = [t.key for t in PANEL]
    cheap = [t.key for t in PANEL if t.cheap]  # asked again: not TPE
    assert [t for t, _ in offers] == tools + cheap
    assert len({json.dumps(c, sort_keys=True) for _, c in offers}) == len(tools + cheap)
    ctx = dataclasses.replace(ctx, portfolio=wide)
    shown, scores = round_offers(ctx)
    assert [t for t, _ in shown] == tools and scores == [None] * len(tools)  # panel order
    for _, config in shown[:3]:
        ctx.trainer.run(config, tool="test")
    shown, scores = round_offers(ctx)
    assert len(shown) == 4 and all(s is not None for s in scores)


def test_each_setting_is_declared_once_and_a_session_runs_on_the_products(tmp_path):
    """The run context holds the session's TuneConfig whole and declares no setting (nor
    default) of its own: a setting added to TuneConfig reaches the nodes, with its default."""
    import dataclasses as dc

    from asap.agent.config import TuneConfig
    from asap.graphs.context import TuneContext

    fields = {f.name for f in dc.fields(TuneContext)}
    # only the live objects two settings name: the study (its name) and the LLM (on or off)
    assert fields & set(TuneConfig.model_fields) == {"study", "llm"}
    study, ctx = australian(tmp_path, None, trials=4)
    product = TuneConfig.make(workload="hpobench:australian", trials=4)
    for name in ("max_retries", "max_steps", "decide_ahead", "prefetch", "cost_weight",
                 "time_budget_s"):  # read through the context, the product's defaults
        assert getattr(ctx, name) == getattr(product, name)
    assert ctx.max_trials == 4 and ctx.initial_state()["knobs"].tau == product.tau
