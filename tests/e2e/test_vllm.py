"""vLLM on a GPU host: native tool calls and cached-token reporting, end to end.

Deselected by default (``-m "not gpu"`` in the pytest options); on a CUDA host with
``pip install -e ".[vllm,dev]"`` and the model in the Hugging Face cache, run
``python -m pytest -m gpu``. The server is started with exactly the command the README documents.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from asap.agent.llm.server import wait_healthy
from asap.tools.ledger.store import Ledger

MODEL = os.environ.get("ASAP_VLLM_MODEL", "Qwen/Qwen2.5-1.5B-Instruct")


def vllm_command(model: str, port: int) -> list[str]:
    """The README's command: loopback only, prefix caching, cached-token usage, tool calling."""
    return ["vllm", "serve", model, "--host", "127.0.0.1", "--port", str(port),
            "--enable-prefix-caching", "--enable-prompt-tokens-details",
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]


@pytest.mark.gpu
def test_vllm_session_uses_tool_calls_and_reports_cached_tokens(tmp_path):
    import torch
    assert torch.cuda.is_available(), "the gpu marker needs a CUDA device"
    assert shutil.which("vllm"), "install the vllm extra: pip install -e '.[vllm]'"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(vllm_command(MODEL, port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout_s=900)
        db = tmp_path / "gpu.db"
        done = subprocess.run(
            [sys.executable, "-m", "asap.cli", "tune", "digits-mlp", "--trials", "4",
             "--db", str(db), "--base-url", f"http://127.0.0.1:{port}/v1", "--model", MODEL,
             "--json"], capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout)
        assert result["protocol"] == "tools" and result["complete"] == 4
        calls = Ledger(db).open_study("digits-mlp").timings("llm_call")
        assert all(c["detail"]["protocol"] == "tools" for c in calls)
        assert all(c["cached_tokens"] is not None for c in calls)
        assert max(c["cached_tokens"] for c in calls[1:]) > 0
    finally:
        server.terminate()
        server.wait(60)
