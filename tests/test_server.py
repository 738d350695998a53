"""The real embedded llama.cpp server (xllamacpp) on the default model."""

import urllib.error
import urllib.request
from urllib.parse import urlparse

import openai
import pytest

from asap.agent.server import EmbeddedServer, ServerError


@pytest.mark.e2e
def test_serves_on_loopback_with_prefix_cache_and_stops():
    srv = EmbeddedServer(say=lambda m: None).start()
    url = srv.url
    assert urlparse(url).hostname == "127.0.0.1"
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
