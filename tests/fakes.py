"""The tests' one fakes module: a scripted chat model, a misbehaving OpenAI server, sessions.

``ScriptedModel(script)`` answers each call with ``script(messages, kwargs)``: a test writes the
model's turns as a function of what it was shown, the way langgraph's own tests do with
``FakeToolCallingModel`` (langchain-core's fake, plus ``bind_tools``). Values of ``tool_choice``
listed in ``refuse`` get HTTP 400, like a server that does not accept them.

``FakeOpenAI`` is a small OpenAI-compatible server on 127.0.0.1 that misbehaves on purpose (fault
injection): JSON-schema requests get a decision (proposal A), other requests a line of text.
``faults`` is a queue of what the next requests get instead: ``"500"``, ``"garbled"`` (a body
that is not JSON), ``"truncated"`` (a decision cut off mid-JSON), ``"slow"`` (no answer before
the client's timeout), ``"reset"`` (the connection closed without an answer: a server that died),
``"drip"`` (an answer a byte every 0.1 s: no read ever times out), and the unreadable 200
answers of :data:`MALFORMED`.
Every request is counted by what it got.

``australian`` and ``run_graph`` set up and run the tuning graph on the HPOBench australian table
(milliseconds per trial; ``time_scale`` > 0 makes trials take simulated time).
"""

from __future__ import annotations

import collections
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from asap.agent.config import TuneConfig
from asap.graphs.context import TuneContext, make_context
from asap.graphs.state import TuningState
from asap.graphs.tuning import graph
from asap.tools.hpo.panel import TOOLS
from asap.tools.hpo.portfolio import Portfolio
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.trials.clock import TimeSource, VirtualClock
from asap.tools.trials.resources import plan_slots
from asap.tools.trials.trainer import Trainer
from asap.tools.workloads import resolve

Script = Callable[[list[BaseMessage], dict[str, Any]], AIMessage]
# 200 answers no OpenAI client can read (FakeOpenAI's faults by these names).
MALFORMED = {
    "no_choices": b'{"id": "x", "object": "chat.completion", "created": 0, "model": "fake", '
                  b'"choices": []}',
    "without_choices": b'{"id": "x", "object": "chat.completion", "created": 0, "model": '
                       b'"fake", "junk": "' + b"j" * 100_000 + b'"}',
    "bad_utf8": b'\xff\xfe{"choices": \x80\x81}',
    "empty": b"",
}


class ScriptedModel(GenericFakeChatModel):
    script: Script
    refuse: tuple[str | None, ...] = ()
    calls: list[tuple[list[BaseMessage], dict[str, Any]]] = []
    warmups: list[tuple[list[BaseMessage], dict[str, Any]]] = []  # one-token cache warm-ups
    stream_delay: float = 0.0  # streamed answers: this long (in 20 empty chunks) before the answer

    def __init__(self, script: Script, refuse: tuple[str | None, ...] = (),
                 stream_delay: float = 0.0) -> None:
        super().__init__(messages=iter(()), script=script, refuse=refuse, calls=[], warmups=[],
                         stream_delay=stream_delay)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        message = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
        for _ in range(20):
            time.sleep(self.stream_delay / 20)
            yield ChatGenerationChunk(message=AIMessageChunk(content=""))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content=message.content, tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)]))

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[t.name for t in tools], tool_choice=tool_choice, **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if kwargs.get("max_tokens") == 1:  # a warm-up: its answer is never read
            self.warmups.append((list(messages), kwargs))
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])
        self.calls.append((list(messages), kwargs))
        if "tools" in kwargs and kwargs.get("tool_choice") in self.refuse:
            request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
            raise openai.BadRequestError(f"tool_choice {kwargs['tool_choice']!r} not supported",
                                         response=httpx.Response(400, request=request), body=None)
        return ChatResult(generations=[ChatGeneration(message=self.script(list(messages), kwargs))])


def call(name: str, args: dict[str, Any], n: int = 0) -> AIMessage:
    """An answer with one tool call."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n}"}])


def proposals(messages: list[BaseMessage]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The labelled proposals of the round in the first (prompt) message: label -> (tool, config).

    Values are read back the way a model would: positionally, in the order the prompt states.
    """
    prompt = messages[0].content
    order = re.search(r"values in this order: (.*) \(", prompt).group(1).split(", ")
    block = prompt.rsplit("## Round", 1)[1]
    found = re.findall(r"^([A-Z]) (\S+): (.*)$", block, re.M)
    full = {t.algorithm: t.key for t in TOOLS.values()}
    return {lab: (full.get(tool, tool), {k: _value(v) for k, v in zip(
        order, values.split(" | ")[0].split(), strict=True) if v != "-"})
            for lab, tool, values in found}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def rounds(messages: list[BaseMessage]) -> int:
    """The round a prompt asks about: the closed rounds' lines plus the current block."""
    text = messages[0].content
    return text.count("\nRound ") + text.count("## Round ")


# What the graph tests' sessions change from the product's settings (TuneConfig), said once:
# the tables' trials take no time here, so the product's priced asking (and its 3 start-up
# trials) would leave every round to the prior (tests/agent/test_pricing.py and
# tests/graphs/test_pricing.py cover that): the LLM is asked every round from the first; and
# speculation and self-tuning run only where a test turns them on.
GRAPH_TESTS = {"ask": "always", "llm_after": 0, "speculation": "off", "selftune": False}


def settings(workload: str, trials: int, given: dict[str, Any]
             ) -> tuple[TuneConfig, dict[str, Any]]:
    """A test's keywords as the session's settings (TuneConfig fields, over
    :data:`GRAPH_TESTS`; ``selftune_every`` turns self-tuning on) and the rest (live callbacks,
    ``started``, ``bounds``)."""
    fields = TuneConfig.model_fields
    chosen = {**GRAPH_TESTS, **{k: v for k, v in given.items() if k in fields}}
    if given.get("selftune_every"):
        chosen["selftune"] = True
    cfg = TuneConfig.make(workload=workload, trials=trials, **chosen)
    return cfg, {k: v for k, v in given.items() if k not in fields}


def australian(tmp_path, model, *, protocol="json", trials=3, time_scale=0.0, name="g", seed=0,
               **given: Any) -> tuple[Study, TuneContext]:
    """A new study on the australian table and a run context deciding with ``model``, on the
    product's settings but for :data:`GRAPH_TESTS` and what the test gives."""
    wl = resolve("hpobench:australian", time_scale=time_scale)
    study = Ledger(tmp_path / f"{name}.db").create_study(name, wl.space, metric=wl.metric,
                                                         direction=wl.direction, workload=wl.ref)
    cfg, live = settings(wl.ref, trials, {"seed": seed, **given})
    ctx = make_context(study, Portfolio(study, seed=seed), Trainer(study, wl, seed=seed), model,
                       cfg, protocol=protocol, **live)
    return study, ctx


def run_graph(ctx: TuneContext, *, tau: float = 0.05, depth: int = 1,
              context: int = 24, plan: int = 1) -> TuningState:
    """Run the compiled tuning graph on ``ctx`` to the end; returns the final state."""
    return graph.invoke(ctx.initial_state(tau, depth, context, plan),
                        {"recursion_limit": ctx.recursion_limit()}, context=ctx)


def chat_script(messages, kwargs):
    """The chat's model: request extraction, intent, tuning decisions, the tuning probe."""
    kind = kwargs.get("response_format", {}).get("json_schema", {}).get("name")
    text = messages[-1].content
    if kind == "request":
        got = {}
        if "australian" in text:
            got |= {"workload": "hpobench:australian", "params": ["learning rate", "width"]}
        if "trials" in text:
            got["trials"] = 3
        return AIMessage(json.dumps(got))
    if kind == "intent":
        for word, intent in [("top", {"action": "top", "n": 5}),
                             ("why", {"action": "why", "tool": "tpe"}),
                             ("time", {"action": "time"}),
                             ("more", {"action": "extend", "trials": 2}),
                             ("narrow", {"action": "narrow", "param": "width", "low": 32,
                                         "high": 64})]:
            if word in text:
                return AIMessage(json.dumps(intent))
        return AIMessage('{"action": "other"}')
    if kind == "decision":
        return AIMessage('{"action": "train", "choice": "A"}')
    return AIMessage("Ready.")  # the tuning's protocol probe, and free answers


class FakeOpenAI:
    def __init__(self, slow_s: float = 5.0, answer: str = '{"action": "train", "choice": "A"}',
                 delay_s: float = 0.0):
        self.faults: collections.deque[str] = collections.deque()
        self.served: collections.Counter[str] = collections.Counter()
        self.requests: list[dict] = []
        self.arrived = threading.Event()
        self.slow_s, self.answer, self.delay_s = slow_s, answer, delay_s
        self.models = b'{"object": "list", "data": [{"id": "fake", "object": "model"}]}'
        self.drip_models = False  # GET /models answers a byte at a time
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # GET /models: what asap checks before a session
                if fake.drip_models:
                    return self._drip()
                kind = "text/html" if fake.models.startswith(b"<") else "application/json"
                self._send(200, fake.models, kind)

            def _drip(self) -> None:
                """Headers, then a byte every 0.1 s for a minute: each read is quick."""
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    for _ in range(600):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fault = fake.faults.popleft() if fake.faults else "ok"
                    fake.served[fault] += 1
                    fake.requests.append({"fault": fault, "headers": {k.lower(): v for k, v in self.headers.items()}})
                fake.arrived.set()  # a request is in flight: what a crash test waits for
                time.sleep(fake.delay_s)  # every answer takes this long, like a real model
                if fault == "reset":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "slow":
                    time.sleep(fake.slow_s)
                if fault == "drip":
                    return self._drip()
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "injected"}}')
                if fault == "garbled":
                    return self._send(200, b"{this is not json")
                if fault in MALFORMED:
                    return self._send(200, MALFORMED[fault])
                content = (fake.answer if "response_format" in body else "Ready.")
                if fault == "truncated":
                    content = fake.answer[:len(fake.answer) // 2]
                usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                         "prompt_tokens_details": {"cached_tokens": 0}}
                head = {"id": "x", "created": 0, "model": body.get("model", "fake")}
                if body.get("stream") and fault in ("unstreamed", "unstreamed_empty"):
                    # a server that ignores stream: true and answers one JSON body
                    reply = {**head, "object": "chat.completion", "usage": usage, "choices": [
                        {"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}
                    if fault == "unstreamed_empty":
                        reply["choices"] = []
                    return self._send(200, json.dumps(reply).encode())
                if body.get("stream"):  # server-sent events, as llama.cpp and vLLM stream
                    chunks = [{**head, "object": "chat.completion.chunk", "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}]},
                        {**head, "object": "chat.completion.chunk", "choices": [],
                         "usage": usage}]
                    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
                    return self._send(200, (data + "data: [DONE]\n\n").encode(),
                                      "text/event-stream")
                reply = {**head, "object": "chat.completion", "usage": usage,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]}
                self._send(200, json.dumps(reply).encode())

            def _send(self, code: int, data: bytes, kind: str = "application/json") -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ManualTime(TimeSource):
    """A virtual clock's time source that moves only when a test says: the agent's work then
    costs exactly what the test charges (``advance``), and nothing else takes any time."""

    def __init__(self) -> None:
        self.t = 0.0
        self._wakes: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        return self.t

    def timeout(self, seconds: float) -> float | None:
        return None  # the keeper sleeps until woken: time moves only by advance()

    def attach(self, wake: Callable[[], None]) -> None:
        self._wakes.append(wake)

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for wake in self._wakes:
            wake()


A = '{"action": "train", "choice": "A"}'  # a JSON decision: the prior's pick


def costing(source: ManualTime, seconds: float) -> ScriptedModel:
    """A model whose every decision takes ``seconds`` on the manual clock and picks A."""
    def script(messages, kwargs):
        source.advance(seconds)
        return AIMessage(A)
    return ScriptedModel(script)


def virtual_session(tmp_path, model, source, *, workload=None, workers=1, trials=5, **given):
    """A run context on a virtual clock driven by ``source``, table lookups in-process."""
    wl = workload or resolve("hpobench:australian")
    study = Ledger(tmp_path / "v.db").create_study("v", wl.space, metric=wl.metric,
                                                   direction=wl.direction, workload=wl.ref)
    study.clock = VirtualClock(origin=0.0, source=source)
    trainer = Trainer(study, wl, in_process=True,
                      slots=plan_slots(workers) if workers > 1 else None)
    cfg, live = settings(wl.ref, trials, given)
    ctx = make_context(study, Portfolio(study), trainer, model, cfg, started=0.0, **live)
    return study, ctx
