"""Built-in workloads: their declared defaults, and what a table trial stores."""

import os

import pytest

from asap.tools.hpo.space import Space
from asap.tools.ledger.store import Ledger
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import BUILTIN, resolve
from asap.tools.workloads.digits import digits_mlp


@pytest.mark.parametrize("ref", sorted(BUILTIN))
def test_every_builtin_declares_defaults_inside_its_space(ref):
    wl = resolve(ref)
    assert set(wl.defaults) == set(wl.space.names)
    active = {k: v for k, v in wl.defaults.items() if wl.space.is_active(wl.space[k], wl.defaults)}
    assert wl.space.validate(active)


def test_digits_mlp_defaults_are_what_a_person_would_train():
    """What the chat pins unnamed parameters to must train well on its own (the pinned
    sgd/momentum 0.495/batch 16 it replaced scored 0.10-0.34)."""
    wl = resolve("digits-mlp")
    config = {k: v for k, v in wl.defaults.items() if wl.space.is_active(wl.space[k], wl.defaults)}
    assert digits_mlp(wl.space.validate(config), lambda step, value: False, 10)[
        "val_accuracy"] > 0.9


def test_a_table_trial_stores_and_shows_the_grid_point_it_evaluated(tmp_path):
    wl = resolve("hpobench:australian")
    study = Ledger(tmp_path / "t.db").create_study("t", wl.space, metric=wl.metric,
                                                  direction=wl.direction)
    proposed = {"alpha": 0.001, "batch_size": 18, "depth": 2, "learning_rate_init": 0.01,
                "width": 903}
    trial = Trainer(study, wl, in_process=True).run(proposed, tool="optuna:tpe")
    assert trial.config == proposed  # what the tool proposed, as the tools were told
    assert trial.evaluated == {"alpha": 0.0021544348, "batch_size": 16, "depth": 2,
                               "learning_rate_init": 0.0059948424, "width": 1024}
    assert study.to_records()[0]["param_width"] == 1024
    from asap.agent.report.stats import summarize
    assert summarize(study)["best_config"]["batch_size"] == 16


def test_the_fork_server_reads_a_workloads_table_once_for_every_worker():
    """Each table trial's worker used to read the table itself (2-3 s of CPU a trial, beside a
    speculative LLM call); the fork server now reads it as it starts, named by the trainer."""
    import subprocess
    import sys

    from asap.tools.trials.workers import PRELOAD_ENV, preload_of
    assert preload_of(resolve("hpobench:australian")).tables == {"hpobench:australian"}
    assert preload_of(resolve("digits-mlp")).tables == set()
    code = ("import asap.tools.workloads.preload; from asap.tools.workloads import tabular; "
            "print(tabular._table.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, PRELOAD_ENV: "hpobench:australian"})
    assert out.stdout.strip() == "1", out.stderr[-500:]


def test_the_fork_server_preloads_the_objectives_module_and_not_torch_for_others():
    """A worker forks with its objective's module already imported (scikit-learn took 1.3 s a
    trial to import again); torch is loaded only for a workload whose module needs it."""
    import subprocess
    import sys

    from asap.evals.objectives import gbc_cancer
    from asap.tools.trials.workers import MODULES_ENV, preload_of
    from asap.tools.workloads import Workload
    wl = Workload("x", gbc_cancer, Space.from_dict({"x": {"type": "float", "low": 0, "high": 1}}),
                  "value", "maximize")
    assert preload_of(wl).modules == {"asap.evals.objectives"}
    assert preload_of(resolve("digits-mlp")).modules == {"asap.tools.workloads.digits"}
    assert preload_of(resolve("hpobench:australian")).modules == {
        "asap.tools.workloads.tabular"}
    code = ("import sys, asap.tools.trials.workers, asap.tools.workloads.preload; "
            "print('sklearn' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, MODULES_ENV: "asap.evals.objectives"})
    assert out.stdout.split() == ["True", "False"], out.stderr[-500:]


def test_what_a_trial_imported_is_preloaded_for_the_next_one(tmp_path):
    """An objective that imports inside its body (the import runs in every trial): a plain
    import statement is read from its code and preloaded from the first trial; one a trial
    alone can tell (a name built at run time) teaches the fork server, which starts again with
    it after the first trial."""
    import gc

    import userwl.lazy as lazy

    from asap.tools.trials.backend import ForkServerBackend
    from asap.tools.trials.workers import body_imports, preload_of
    from asap.tools.workloads import Workload
    gc.collect()  # earlier tests' trainers, never closed: their kept workers end with them
    space = Space.from_dict({"x": {"type": "float", "low": 0, "high": 1}})
    assert body_imports(lazy.static) == {"pygments"} and body_imports(lazy.dynamic) == set()
    values = {}
    for fn in (lazy.static, lazy.dynamic):
        wl = Workload(f"userwl.lazy:{fn.__name__}", fn, space, "value", "maximize")
        assert "userwl.lazy" in preload_of(wl).modules
        study = Ledger(str(tmp_path / "l.db")).open_or_create(fn.__name__, space,
                                                              metric="value", direction="maximize")
        backend = ForkServerBackend()
        trainer = Trainer(study, wl, backend=backend)
        values[fn.__name__] = [trainer.run({"x": x}, tool="t").value for x in (0.5, 0.25, 0.125)]
        if fn is lazy.dynamic:
            assert "tabulate" in backend.learned.modules
        trainer.close()
    assert values == {"static": [1.0, 1.0, 1.0], "dynamic": [0.0, 1.0, 1.0]}


def test_the_fork_server_folder_is_private_whatever_another_user_made_first(tmp_path):
    """A folder at the old predictable name (what another local user could create, world
    writable) is never used: the fork server's socket goes in a fresh 0700 folder of ours."""
    import json
    import subprocess
    import sys
    script = (
        "import json, os, stat, tempfile\n"
        "import multiprocessing as mp\n"
        "trap = os.path.join(tempfile.gettempdir(), f'asap-mp-{os.getpid()}')\n"
        "os.makedirs(trap); os.chmod(trap, 0o777)\n"
        "from asap.tools.trials.workers import fork_server\n"
        "fork_server()\n"
        "d = mp.current_process()._config['tempdir']\n"
        "st = os.stat(d)\n"
        "print(json.dumps({'dir': d, 'trap': trap, 'mode': stat.S_IMODE(st.st_mode),\n"
        "                  'uid': st.st_uid, 'me': os.getuid(), 'used': os.listdir(trap)}))\n"
        "os.rmdir(trap)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["dir"] != got["trap"] and got["used"] == []
    assert got["mode"] == 0o700 and got["uid"] == got["me"]
    assert os.path.basename(got["dir"]).startswith("asap-mp-")
