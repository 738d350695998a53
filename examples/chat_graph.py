"""Driving asap's chat graph from code: a request, the confirmation interrupt, a question.

    python examples/chat_graph.py          # the embedded LLM (pip install -e ".[local]")

The same graph ``asap chat`` runs in the terminal; here an app sends the person's turns itself and
answers the confirmation with ``Command(resume="yes")``.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from asap.graphs.chat import ChatContext, build_chat_graph


def converse(llm: BaseChatModel, db: str = "asap.db", tune_llm: BaseChatModel | None = None,
             turns: tuple[str, ...] = ("tune hpobench:australian, 3 trials",
                                       "what were the top 5?")) -> list[str]:
    """Send ``turns`` (saying yes to any confirmation); returns what the agent said.

    The confirmed search space is written beside the ledger ``db``."""
    graph = build_chat_graph(InMemorySaver())
    ctx = ChatContext(llm=llm, db=db, tune_llm=tune_llm)
    config = {"configurable": {"thread_id": "example"}}
    said: list[str] = []
    for text in turns:
        state = graph.invoke({"messages": [("user", text)]}, config, context=ctx)
        while state.get("__interrupt__"):  # the plan awaits a yes before any compute is spent
            said.append(state["__interrupt__"][0].value["question"])
            state = graph.invoke(Command(resume="yes"), config, context=ctx)
        said.append(state["messages"][-1].content)
    return said


if __name__ == "__main__":
    from asap.agent.llm.client import chat_model
    from asap.agent.llm.server import EmbeddedServer
    with EmbeddedServer() as srv:
        for line in converse(chat_model(srv.base_url, "default")):
            print(line, end="\n\n")
