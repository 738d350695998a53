"""The real embedded llama.cpp server (xllamacpp) on the default model."""

import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import openai
import pytest

from asap.agent.llm.server import EmbeddedServer, ServerError


def listening_on(port: int) -> set[str]:
    """The local addresses a TCP port listens on, from the kernel's table (/proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            addr, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(socket.inet_ntop(socket.AF_INET if len(addr) == 8 else socket.AF_INET6,
                                           _unhex(addr)))
    return found


def _unhex(addr: str) -> bytes:
    """/proc/net/tcp writes each 32-bit word of the address in host (little-endian) order."""
    raw = bytes.fromhex(addr)
    return b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))


@pytest.mark.e2e
def test_serves_on_loopback_with_prefix_cache_and_stops():
    srv = EmbeddedServer(say=lambda m: None).start()
    url = srv.url
    assert urlparse(url).hostname == "127.0.0.1"
    assert listening_on(urlparse(url).port) == {"127.0.0.1"}  # the socket itself, not the URL
    client = openai.OpenAI(base_url=srv.base_url, api_key="local")
    system = "You tune hyperparameters. " * 40  # a long static prefix, as in asap's prompts
    usage = []
    for question in ("Name one optimizer.", "Name one learning rate."):
        r = client.chat.completions.create(
            model="default", max_tokens=8, temperature=0,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])
        usage.append(r.usage)
    assert usage[1].prompt_tokens_details.cached_tokens > 0.8 * usage[0].prompt_tokens
    srv.stop()
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(f"{url}/health", timeout=2)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ServerError, match="does not exist"):
        EmbeddedServer(tmp_path / "nope.gguf").start()


@pytest.mark.e2e
def test_a_reserved_server_loads_at_its_first_question_on_the_port_it_named():
    """What a session does: the URL is known at once (its chat model is built with it), nothing
    listens until a call is first due, then the model loads in the background."""
    srv = EmbeddedServer(say=lambda m: None).reserve()
    try:
        port = urlparse(srv.base_url).port
        assert listening_on(port) == set()  # not loaded: a session whose calls never pay
        assert srv.ready(wait=True) and listening_on(port) == {"127.0.0.1"}
        answer = openai.OpenAI(base_url=srv.base_url, api_key="local").chat.completions.create(
            model="default", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices
    finally:
        srv.stop()


@pytest.mark.e2e
def test_a_model_that_fails_to_load_in_the_background_says_why(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(4096))  # the magic, then nothing llama.cpp can read
    srv = EmbeddedServer(broken, say=lambda m: None).reserve()
    try:
        assert not srv.ready(wait=True) and not srv.ready()
        assert isinstance(srv.error, ServerError) and "failed to start" in str(srv.error)
    finally:
        srv.stop()
