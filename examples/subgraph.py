"""asap's tuning graph as one node of another LangGraph app.

    python examples/subgraph.py            # the embedded LLM decides (pip install -e ".[local]")

The parent graph picks a task, the ``tune`` node (``asap.graphs.app.build_tune_graph``) runs it,
and a last node reads the typed result.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from asap.graphs.app import build_tune_graph


class Pipeline(TypedDict, total=False):
    workload: str
    trials: int
    settings: dict[str, Any]
    result: dict[str, Any]
    verdict: str


def build(llm: BaseChatModel | None = None, db: str = "asap.db"):
    def plan(state: Pipeline) -> Pipeline:
        return {"workload": "hpobench:australian", "trials": 4,
                "settings": {"db": db, "study": "pipeline", "speculation": "off"}}

    def judge(state: Pipeline) -> Pipeline:
        r = state["result"]
        return {"verdict": f"best {r['metric']} {r['best_value']:.4f} after {r['trials']} trials "
                           f"in {r['wall_clock_s']:.1f} s (LLM share {r['llm_share'] or 0:.0%})"}

    g = StateGraph(Pipeline)
    g.add_node("plan", plan)
    g.add_node("tune", build_tune_graph(llm))  # a compiled graph is a node
    g.add_node("judge", judge)
    g.add_edge(START, "plan")
    g.add_edge("plan", "tune")
    g.add_edge("tune", "judge")
    g.add_edge("judge", END)
    return g.compile()


if __name__ == "__main__":
    print(build().invoke({})["verdict"])
