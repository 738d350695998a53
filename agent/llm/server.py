"""The embedded LLM server: llama.cpp's own OpenAI-compatible server through ``xllamacpp``.

Why xllamacpp: a prebuilt wheel (no 11-minute compile) that embeds llama.cpp's C++ server,
including prefix reuse of the KV cache and ``usage.prompt_tokens_details.cached_tokens``. It also
reuses cached chunks past the common prefix by shifting their KV entries (``n_cache_reuse``): a
compacted trial log (rows deleted, none added) is then read from the cache, not recomputed; its
host-memory prompt cache is off (see :meth:`EmbeddedServer.start`). The
server binds 127.0.0.1 only and runs inside this process; :meth:`EmbeddedServer.stop` (or leaving
the ``with`` block) shuts it down.

Example::

    with EmbeddedServer() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local")
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from asap.agent.llm.deadline import DeadlineExceeded, within
from asap.agent.llm.model import pull

LOOPBACK = "127.0.0.1"
SERVE_PORT = 8080  # `asap llm serve`'s port: what langgraph.json's ASAP_BASE_URL names
# Shortest run of cached tokens llama.cpp shifts into a new position; a log row is ~25-50 tokens.
CACHE_REUSE_TOKENS = 16


class ServerError(RuntimeError):
    """The embedded server could not start or did not become healthy."""


class EmbeddedServer:
    """One llama.cpp server on 127.0.0.1 serving one GGUF model."""

    def __init__(self, model: str | Path | None = None, *, port: int = 0, n_ctx: int = 8192,
                 threads: int | None = None, say=print) -> None:
        self.model = Path(model) if model else None
        self.port, self.n_ctx = port, n_ctx
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.say = say
        self._server = None
        self.url: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._model: Path | None = None  # checked by reserve()
        self.error: Exception | None = None  # why a start in the background failed

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        if self.url is None:
            raise ServerError("the embedded server is not running")
        return f"{self.url}/v1"

    def start(self, timeout_s: float = 120.0) -> EmbeddedServer:
        """Start the server and wait until it answers."""
        self._launch(self._check(), timeout_s)
        return self

    def reserve(self) -> EmbeddedServer:
        """Check what can fail at once (the extra, the model file, the port) and fix the port,
        so :attr:`base_url` is known; the model loads at the first :meth:`ready` (a session
        whose calls would not pay never loads it)."""
        self._model = self._check()
        if not self.port:  # the URL must be known before the server binds it
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                self.port = sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        return self

    def ready(self, wait: bool = False) -> bool:
        """Whether the server answers; the first call starts loading the model in a background
        thread (``wait``: and waits for it). False for good once that start failed
        (:attr:`error` says why)."""
        with self._lock:  # the graph's two branches may both ask
            if self._thread is None and self._server is None:
                model = self._model or self.reserve()._model

                def run() -> None:
                    try:
                        self._launch(model, 120.0)
                    except Exception as exc:  # noqa: BLE001 - ready() reports it
                        self.error = exc
                self._thread = threading.Thread(target=run, name="asap-llm-start", daemon=True)
                self._thread.start()
        if self._thread is not None and (wait or not self._thread.is_alive()):
            self._thread.join()
        return self._server is not None and self.error is None and (
            self._thread is None or not self._thread.is_alive())

    def _check(self) -> Path:
        try:
            import xllamacpp  # noqa: F401 - the 'local' extra
        except ImportError:
            raise ServerError("the embedded server needs the 'local' extra: "
                              "pip install 'asap-hpo[local]'") from None
        model = self.model or pull(say=self.say)
        check_gguf(model)
        if self.port:
            check_port_free(self.port)
        return model

    def _launch(self, model: Path, timeout_s: float) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model)
        params.hostnames = [LOOPBACK]  # never beyond loopback
        params.port = self.port
        params.n_parallel = 2  # one slot for the critical path, one for speculation
        params.n_ctx = self.n_ctx * params.n_parallel  # llama.cpp splits n_ctx between slots
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.cache_prompt = True
        params.n_cache_reuse = CACHE_REUSE_TOKENS
        # No host-memory prompt cache: when a prompt keeps under half of a slot's tokens (every
        # compaction), llama.cpp saves the slot there and swaps in the saved state that matches
        # "best", which by its prefix-only measure is the older, shorter log saved at the previous
        # compaction: the second compaction of a session read 580 of 1078 tokens from the cache,
        # not all but the block (tests/e2e). The slots still keep their own caches, chosen by
        # prompt similarity; what is lost is restoring a log after unrelated prompts used both.
        params.cache_ram_mib = 0
        params.warmup = False  # an empty decode at load: CPU taken from the trials beside it
        params.verbosity = 0
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - the C++ side raises plain exceptions
            raise ServerError(f"llama.cpp server failed to start on {model}: {exc}") from None
        self.url = self._server.listening_address.rstrip("/")
        wait_healthy(self.url, timeout_s)

    def stop(self) -> None:
        """Stop the server. A call still in flight (a session ended by SIGTERM mid-call) has
        its connection shut first: the server's handler for it waits for its client, and the
        server's destructor waits for that handler."""
        if self._thread is not None:
            self._thread.join()  # a start in the background ends first
        if self._server is not None:
            server, self._server, self.url = self._server, None, None
            shut_connections(self.port)
            del server  # the C++ destructor stops the main loop and joins its threads

    def __enter__(self) -> EmbeddedServer:
        return self.start() if self._server is None and self._model is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def shut_connections(port: int) -> None:
    """Shut down this process's TCP connections to 127.0.0.1:``port`` (Linux's /proc: the
    sockets whose remote end is that port, among this process's descriptors). The threads
    blocked reading them get an end of stream at once."""
    inodes = set()
    with contextlib.suppress(OSError, StopIteration, IndexError, ValueError):
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                host, _, remote_port = fields[2].partition(":")
                if host == "0100007F" and int(remote_port, 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}") in inodes:
                    with socket.socket(fileno=os.dup(int(fd))) as sock:
                        sock.shutdown(socket.SHUT_RDWR)


def check_port_free(port: int) -> None:
    """Refuse a port on 127.0.0.1 that something already listens on, before loading a model."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise ServerError(f"port {port} on {LOOPBACK} is not free ({exc.strerror}); "
                              "pass --port with another one") from None


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (the LLM would share its cores with training)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wait_healthy(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``/health`` until it answers ``{"status": "ok"}``."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if json.loads(r.read()).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ServerError(f"llama.cpp server at {url} not healthy after {timeout_s:g}s ({last})")


def check_gguf(model: Path) -> None:
    """Refuse a model path that is not a readable GGUF file, naming what it is instead."""
    if not model.is_file():
        raise ServerError(f"model file {model} does not exist")
    try:
        with open(model, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ServerError(f"cannot read model file {model}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise ServerError(f"{model} is not a GGUF model file (it starts with {magic!r}); the "
                          "embedded server reads llama.cpp's GGUF format")


def _get_models(base_url: str, api_key: str | None, timeout_s: float, limit: int) -> bytes:
    """The body (its first ``limit`` bytes) of ``GET {base_url}/models``, all of it within
    ``timeout_s`` (a server that drips its answer does not hold the session)."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")

    def get() -> bytes:
        with urllib.request.urlopen(request, timeout=timeout_s) as r:  # noqa: S310 - http(s)
            return r.read(limit)
    try:
        return within(timeout_s, get, f"GET {base_url}/models")
    except DeadlineExceeded as exc:
        raise TimeoutError(str(exc)) from None


def probe(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> None:
    """Check that an OpenAI-compatible server answers at ``base_url`` (``GET /models``), and say
    in words what is wrong when it does not: nothing listening, an HTTP error, not JSON."""
    try:
        body = _get_models(base_url, api_key, timeout_s, 4096)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ServerError(f"{base_url} refused the API key (HTTP {exc.code}); set "
                              "OPENAI_API_KEY") from None
        if exc.code == 404:
            return  # no model list here; the chat endpoint may still answer
        raise ServerError(f"{base_url} answered HTTP {exc.code} to GET /models; is it an "
                          "OpenAI-compatible endpoint (ending in /v1)?") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(f"nothing answers at {base_url} ({reason}); start the server or fix "
                          "--base-url") from None
    try:
        json.loads(body)
    except ValueError:
        shown = body[:60].decode("utf-8", "replace")
        raise ServerError(f"{base_url} answered GET /models with {shown!r}, not the JSON an "
                          "OpenAI-compatible endpoint sends; check --base-url (it usually ends "
                          "in /v1)") from None


def is_llamacpp(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> bool:
    """Whether ``base_url`` is a llama.cpp server (its ``GET /models`` says ``owned_by:
    llamacpp``): it then takes a GBNF ``grammar``, which decodes decisions exactly."""
    try:
        data = json.loads(_get_models(base_url, api_key, timeout_s, 65536)).get("data") or []
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return False
    return any(isinstance(m, dict) and m.get("owned_by") == "llamacpp" for m in data)


def endpoint(stack: contextlib.ExitStack, base_url: str | None, model: str | None, *,
             api_key: str | None = None, say: Callable[[str], object] = print
             ) -> tuple[str, str]:
    """``(base_url, model)`` to talk to: the one given (checked to answer), else the embedded
    server, started on ``stack`` (it stops when the stack closes); ``model`` is then a GGUF path
    or the default."""
    if base_url is not None:
        probe(base_url, api_key)
        return base_url, model or "default"
    srv = stack.enter_context(EmbeddedServer(model, say=say))
    return srv.base_url, "default"
