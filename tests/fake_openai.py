"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves on purpose (fault injection).

``FakeOpenAI().start()`` answers ``POST /v1/chat/completions``: JSON-schema requests get a
decision (proposal A), other requests a line of text. ``faults`` is a queue of what the next
requests get instead: ``"500"``, ``"garbled"`` (a body that is not JSON), ``"truncated"`` (a
decision cut off mid-JSON), ``"slow"`` (no answer before the client's timeout), ``"reset"`` (the
connection closed without an answer: a server that died). Every request is counted by what it got.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, slow_s: float = 5.0, answer: str = '{"action": "train", "choice": "A"}',
                 delay_s: float = 0.0):
        self.faults: collections.deque[str] = collections.deque()
        self.served: collections.Counter[str] = collections.Counter()
        self.requests: list[dict] = []
        self.slow_s, self.answer, self.delay_s = slow_s, answer, delay_s
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fault = fake.faults.popleft() if fake.faults else "ok"
                    fake.served[fault] += 1
                    fake.requests.append({"fault": fault, "headers": {k.lower(): v for k, v in self.headers.items()}})
                time.sleep(fake.delay_s)  # every answer takes this long, like a real model
                if fault == "reset":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "slow":
                    time.sleep(fake.slow_s)
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "injected"}}')
                if fault == "garbled":
                    return self._send(200, b"{this is not json")
                content = (fake.answer if "response_format" in body else "Ready.")
                if fault == "truncated":
                    content = fake.answer[:len(fake.answer) // 2]
                reply = {"id": "x", "object": "chat.completion", "created": 0,
                         "model": body.get("model", "fake"),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                   "total_tokens": 15, "prompt_tokens_details":
                                   {"cached_tokens": 0}}}
                self._send(200, json.dumps(reply).encode())

            def _send(self, code: int, data: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
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
