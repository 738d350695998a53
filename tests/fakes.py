"""A scripted tool-calling chat model for graph tests (langchain-core's fake, plus bind_tools).

``ScriptedModel(script)`` answers each call with ``script(messages, kwargs)``: a test writes the
model's turns as a function of what it was shown, the way langgraph's own tests do with
``FakeToolCallingModel``. Values of ``tool_choice`` listed in ``refuse`` get HTTP 400, like a
server that does not accept them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

Script = Callable[[list[BaseMessage], dict[str, Any]], AIMessage]


class ScriptedModel(GenericFakeChatModel):
    script: Script
    refuse: tuple[str | None, ...] = ()
    calls: list[tuple[list[BaseMessage], dict[str, Any]]] = []
    stream_delay: float = 0.0  # streamed answers: this long (in 20 empty chunks) before the answer

    def __init__(self, script: Script, refuse: tuple[str | None, ...] = (),
                 stream_delay: float = 0.0) -> None:
        super().__init__(messages=iter(()), script=script, refuse=refuse, calls=[],
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
    return {lab: (tool, {k: _value(v) for k, v in zip(order, values.split(), strict=True) if v != "-"})
            for lab, tool, values in found}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def rounds(messages: list[BaseMessage]) -> int:
    return messages[0].content.count("## Round")
