"""The product's chat model: a ``ChatOpenAI`` made at its first call, against a local
OpenAI-compatible server (tests/fakes.py)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from fakes import FakeOpenAI
from langchain_core.messages import HumanMessage

from asap.agent.llm.client import chat_model, deadline_of, json_model, timed_invoke, usage_of

SCHEMA = {"type": "object", "properties": {"action": {"type": "string"}}, "required": ["action"]}


@pytest.fixture
def server():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_call_goes_to_chatopenai_with_its_settings_and_tokens(server, streamed):
    model = chat_model(server.base_url, "fake", timeout_s=5.0, max_tokens=7)
    cancel = threading.Event() if streamed else None  # a cancellable call streams
    answer = timed_invoke(json_model(model, SCHEMA), [HumanMessage("Decide.")], study=None,
                          protocol="json", cancel=cancel)
    assert answer.content == server.answer  # the JSON answer, as response_format asked
    assert usage_of(answer) == (10, 0, 5)
    real = model.real()
    assert type(real).__name__ == "ChatOpenAI" and real.max_tokens == 7
    assert model.real() is real  # made once
    assert deadline_of(model) == deadline_of(real)


def test_making_the_model_imports_neither_openai_nor_langchain_openai():
    """A session makes its model at the start, and one whose calls never pay never calls it:
    those imports wait for the first call."""
    script = (
        "import sys\n"
        "import asap.graphs.api\n"
        "from asap.agent.llm.client import chat_model\n"
        "model = chat_model('http://127.0.0.1:9/v1', 'x')\n"
        "print(sorted(m for m in ('openai', 'langchain_openai') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
