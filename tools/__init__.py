"""asap's tools: search spaces, the HPO tools (Optuna, Nevergrad), ``train_on_gpu`` and workloads.

:func:`study_tools` returns the tools as LangChain ``BaseTool``s bound to one study, for any
tool-calling agent (e.g. ``langchain.agents.create_agent``).

The layer of the HPO domain: types, search spaces, the SQLite ledger, optimizers, the portfolio,
pruning, the trainer and workloads. Nothing here knows an LLM or LangGraph.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool


def study_tools(workload: str, *, db: str | Path | None = None, study: str | None = None,
              space: str | Path | None = None, seed: int = 0, time_limit_s: float = 600.0,
              time_scale: float = 0.0) -> list[BaseTool]:
    """``optuna_suggest``, ``nevergrad_suggest``, ``llm_propose`` and ``train_on_gpu``, bound to
    the study ``study`` (default: named after the workload) in the ledger ``db`` (default:
    ``asap.db``, the commands' own), created on first use and resumed after; every trial lands in that ledger as with ``asap tune``."""
    from asap.tools.hpo.portfolio import Portfolio
    from asap.tools.hpo_tools import Toolbox
    from asap.tools.ledger.store import DEFAULT_DB, Ledger
    from asap.tools.trials.trainer import Trainer
    from asap.tools.workloads import resolve

    wl = resolve(workload, space_file=space, time_scale=time_scale)
    name = study or workload.replace(":", "-").replace("/", "-")
    st = Ledger(db or DEFAULT_DB).open_or_create(name, wl.space, metric=wl.metric, direction=wl.direction,
                                   workload=wl.ref)
    st.fail_running("interrupted: the process using these tools stopped during this trial")
    return Toolbox(st, Portfolio(st, seed=seed), Trainer(st, wl, time_limit_s=time_limit_s)).tools()
