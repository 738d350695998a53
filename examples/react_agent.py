"""asap's tools in someone else's agent: LangChain's ``create_agent`` tunes a table.

    pip install -e ".[examples]"   # langchain>=1
    python examples/react_agent.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

The agent needs a model that makes native tool calls: vLLM serving a tool-calling model with
a parser (``vllm serve Qwen/Qwen2.5-7B-Instruct --enable-auto-tool-choice --tool-call-parser
hermes``), or any OpenAI-compatible endpoint that does. The embedded SmolLM2 does not (it
answers tool requests with text, even with ``tool_choice="required"``): the script probes the
model first and says so instead of letting the agent ramble. Every trial lands in the ledger
like ``asap tune``'s.
"""

from __future__ import annotations

import argparse

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel

from asap.tools import study_tools

TASK = ("Tune the MLP on the australian table for val_acc. Ask optuna_suggest (tpe) for one "
        "configuration, train it with train_on_gpu, then report the accuracy.")


def main(model: BaseChatModel, db: str = "asap.db") -> dict:
    agent = create_agent(model, study_tools("hpobench:australian", db=db, study="react"))
    return agent.invoke({"messages": [("user", TASK)]})


if __name__ == "__main__":
    from asap.agent.llm.client import chat_model
    from asap.agent.llm.protocols import ToolCallProtocol, pick_protocol
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    model = chat_model(args.base_url, args.model)  # max_tokens 300: a bounded answer per turn
    if pick_protocol(model, "auto") != ToolCallProtocol.name:
        raise SystemExit(f"{args.model} at {args.base_url} answers tool requests with text, not "
                         "tool calls: serve a tool-calling model (see the top of this file)")
    final = main(model)
    print(final["messages"][-1].content)
