"""An objective whose trial ends only once an LLM call has begun while it trains: what a test
of time hidden behind training waits on, instead of on the clock. In-process (isolate=False):
the scripted model calls :func:`asked`."""

import threading
import time

_calls = threading.Condition()
_began: list[float] = []


def asked() -> None:
    """An LLM call has begun (the scripted model says so)."""
    with _calls:
        _began.append(time.monotonic())
        _calls.notify_all()


def overlapped(config, report, number=0, waiting=3):
    """Trial ``waiting`` ends once a call has begun during it (a minute at most)."""
    began = time.monotonic()
    if number == waiting:
        with _calls:
            _calls.wait_for(lambda: any(t >= began for t in _began), timeout=60)
    return {"score": config["x"]}
