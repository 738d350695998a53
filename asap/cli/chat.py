"""``asap chat``: the terminal around the chat graph (rich rendering, streamed tokens, threads).

Each person turn is one run of the graph on the thread; a pending ``interrupt`` (the plan
awaiting a yes) is answered with ``Command(resume=...)``. Threads live in the ledger file through
LangGraph's ``SqliteSaver``, so ``asap chat --thread ID`` resumes one in a new process.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langgraph.types import Command
from rich.console import Console

from asap.agent.chat import answers
from asap.graphs.chat import ChatContext, build_chat_graph
from asap.graphs.session import CTRL_C
from asap.tools.ledger.store import Ledger

EXIT = {"exit", "quit", "bye", ":q"}


@contextlib.contextmanager
def checkpointer(db: str) -> Iterator[Any]:
    """LangGraph's SQLite checkpointer on the ledger file (its own tables).

    The ledger is opened first: it refuses a file that is not asap's and stamps a new one as a
    ledger before the checkpointer adds its tables.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver
    Ledger(db).close()
    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def threads(db: str) -> list[dict[str, Any]]:
    """Every chat thread in ``db``: id, its last activity (local time), turns, its study and
    its first request; the latest first."""
    out: dict[str, dict[str, Any]] = {}
    with checkpointer(db) as saver:
        for cp in saver.list(None):
            tid = cp.config["configurable"]["thread_id"]
            if tid in out:
                continue  # newest first: the first seen is the latest state
            msgs = cp.checkpoint["channel_values"].get("messages", [])
            first = next((m.content for m in msgs if isinstance(m, HumanMessage)), "")
            out[tid] = {"thread": tid, "last": _local(cp.checkpoint["ts"]),
                        "messages": len(msgs), "first": first[:70],
                        "study": cp.checkpoint["channel_values"].get("study")}
    return list(out.values())


def chat(ctx: ChatContext, *, thread: str | None = None, console: Console | None = None,
         ask: Callable[[str], str] | None = None) -> str:
    """Run the conversation until the person types exit (or input ends); returns the thread."""
    console = console or Console()
    ask = ask or (lambda prompt: console.input(prompt))
    thread = thread or uuid.uuid4().hex[:8]
    config = {"configurable": {"thread_id": thread}}
    with checkpointer(ctx.db) as saver:
        graph = build_chat_graph(saver)
        console.print(f"[dim]thread {thread} (asap chat --thread {thread} resumes it); "
                      "exit to leave[/]")
        _recap(graph, config, thread, ctx.db, console)
        pending = _pending(graph, config)
        _say(console, pending)
        while True:
            try:
                text = ask("[bold green]you>[/] ").strip()
            except EOFError:
                break
            if text.lower() in EXIT:
                break
            if not text:
                continue
            turn = Command(resume=text) if pending else {"messages": [HumanMessage(text)]}
            ctx.cancel.clear()
            try:
                with _ctrl_c_cancels(ctx, console):
                    _render(graph.stream(turn, config, context=ctx,
                                         stream_mode=["messages", "custom", "updates"]), console)
            except KeyboardInterrupt:  # a second Ctrl-C: leave the turn at once
                _say(console, "Interrupted. Everything finished is saved in the ledger.")
            pending = _pending(graph, config)
            _say(console, pending)
    return thread


@contextlib.contextmanager
def _ctrl_c_cancels(ctx: ChatContext, console: Console) -> Iterator[None]:
    """During a turn, the first Ctrl-C cancels the running session through ``ctx.cancel``: the
    graph's node runs on a LangGraph worker thread, where no signal handler can be installed,
    so it checks the token; its trial is failed, the node returns and the thread stays usable.
    A second Ctrl-C interrupts as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if ctx.cancel.is_set():
            raise KeyboardInterrupt
        ctx.cancel.cancel(CTRL_C)
        console.print("[yellow]stopping the session (Ctrl-C again to leave at once)[/]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _local(ts: str) -> str:
    """A checkpoint's UTC time stamp as local time, to the minute."""
    return datetime.fromisoformat(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def _recap(graph: Any, config: dict, thread: str, db: str, console: Console) -> None:
    """A resumed thread: its study where it stopped, and the last exchange."""
    values = graph.get_state(config).values or {}
    messages = values.get("messages", [])
    if not messages:
        return
    console.print(f"[dim]Resuming thread {thread}.[/]")
    if values.get("study") and Ledger(db).has_study(values["study"]):
        _say(console, answers.best(Ledger(db, readonly=True).open_study(values["study"])))
    last = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=None)
    if last is not None:
        console.print(f"[dim]you> {messages[last].content}[/]", markup=True, highlight=False)
        reply = next((m for m in messages[last + 1:] if isinstance(m, AIMessage)), None)
        if reply is not None:
            _say(console, str(reply.content)[:600])


def _say(console: Console, text: str | None) -> None:
    if text:
        console.print("[bold cyan]asap>[/] ", end="")
        console.print(text, markup=False, highlight=False)


def _pending(graph: Any, config: dict) -> str | None:
    """The question of an interrupt waiting on this thread, if any."""
    snap = graph.get_state(config)
    for item in getattr(snap, "interrupts", ()) or ():
        return item.value["question"]
    return None


THINKING = "thinking (the model reads your message)..."


def _render(stream: Any, console: Console) -> None:
    """Stream LLM tokens of free answers, trial progress, and each node's new AI messages; a
    status line says what is going on until the first of them (a small model on a busy
    machine can take minutes to answer)."""
    streamed = False
    with console.status(THINKING, spinner="dots") as status:
        for mode, chunk in stream:
            if mode == "messages":
                msg, meta = chunk
                if isinstance(msg, AIMessageChunk) and meta.get("langgraph_node") == "respond" \
                        and msg.content:
                    status.stop()
                    console.print(msg.content, end="", markup=False, highlight=False)
                    streamed = True
            elif mode == "custom":
                _progress(chunk, console, status)
            elif mode == "updates":
                for node, update in chunk.items():
                    if node.startswith("__") or not update:
                        continue
                    said = update.get("messages", [])
                    if node == "confirm":
                        said = said[2:]  # the question went with the interrupt, then the reply
                    for m in said:
                        if isinstance(m, AIMessage) and not (streamed and node == "respond"):
                            status.stop()
                            _say(console, m.content)
    if streamed:
        console.print()


def _progress(event: dict[str, Any], console: Console, status: Any) -> None:
    """A session's progress: notices, trial starts (with a live line of its intermediate
    values), finished trials."""
    if "notice" in event:
        console.print(f"[dim]  {event['notice']}[/]", highlight=False)
    elif "started" in event:
        console.print(f"[dim]  trial {event['started']} started ({event['tool']}): "
                      f"{event['config']}[/]", highlight=False)
        status.update(f"trial {event['started']} training")
        status.start()
    elif "report" in event:
        status.update(f"trial {event['report']} step {event['step']}: "
                      f"{event['metric']} {event['value']:.4g}")
    elif "trial" in event:
        value = "-" if event["value"] is None else f"{event['value']:.4g}"
        console.print(f"[dim]  trial {event['trial']} {event['status']} {value} "
                      f"({event['tool']})[/]")
        status.update("choosing the next trial...")


def default_context(db: str, base_url: str | None, model: str | None,
                    llm: BaseChatModel | None = None, say: Callable[[str], object] = print
                    ) -> tuple[ChatContext, Any]:
    """The chat's context and a stack to close: the embedded server unless an endpoint is given
    (one server for the chat and its tuning sessions)."""
    from asap.agent.llm.client import chat_model
    from asap.agent.llm.server import endpoint
    stack = contextlib.ExitStack()
    if llm is None:
        if base_url is None:
            say("starting the embedded model (SmolLM2-135M-Instruct on llama.cpp, ~10-30 s)...")
        base_url, model = endpoint(stack, base_url, model, say=say)
        llm = chat_model(base_url, model)
    return ChatContext(llm=llm, db=db, base_url=base_url, model=model), stack
