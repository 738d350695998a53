"""In-process trials on the session's own thread (asap.tools.trials.caller)."""

from __future__ import annotations

import contextlib
import contextvars
import threading

import pytest

from asap.tools.trials.caller import CallerThread

WHO = contextvars.ContextVar("who", default="nobody")


def test_a_call_runs_on_the_serving_thread_in_the_submitters_context():
    caller, seen = CallerThread(), []

    def submitter() -> None:
        WHO.set("the submitter")
        seen.append(caller.submit(lambda: (threading.get_ident(), WHO.get())).result())
        caller.stop()

    thread = threading.Thread(target=submitter)
    thread.start()
    caller.serve()
    thread.join()
    assert seen == [(threading.get_ident(), "the submitter")]
    assert WHO.get() == "nobody"  # the serving thread's own context is untouched


def test_each_call_runs_inside_around():
    caller, log = CallerThread(), []

    @contextlib.contextmanager
    def around():
        log.append("enter")
        yield
        log.append("exit")

    first = caller.submit(lambda: log.append("call") or 1)
    second = caller.submit(lambda: 2)
    caller.stop()
    caller.serve(around)
    assert (first.result(), second.result()) == (1, 2)
    assert log == ["enter", "call", "exit", "enter", "exit"]


def test_calls_after_stop_fail_at_once_and_none_is_left_waiting():
    caller = CallerThread()
    before = caller.submit(lambda: "ran")
    caller.stop()
    queued = caller.submit(lambda: "never")  # behind the stop: drained, not run
    caller.serve()
    late = caller.submit(lambda: "never")
    assert before.result() == "ran"
    for future in (queued, late):
        with pytest.raises(RuntimeError, match="no longer runs trials"):
            future.result(timeout=0)


def test_an_error_goes_to_its_call_and_serving_goes_on():
    caller = CallerThread()
    bad = caller.submit(lambda: 1 / 0)
    good = caller.submit(lambda: "next")
    caller.stop()
    caller.serve()
    with pytest.raises(ZeroDivisionError):
        bad.result(timeout=0)
    assert good.result(timeout=0) == "next"


def test_ctrl_c_on_the_serving_thread_fails_its_call_and_ends_serving():
    caller = CallerThread()

    def interrupted():
        raise KeyboardInterrupt

    hit = caller.submit(interrupted)
    after = caller.submit(lambda: "never")
    with pytest.raises(KeyboardInterrupt):
        caller.serve()
    with pytest.raises(KeyboardInterrupt):
        hit.result(timeout=0)
    with pytest.raises(RuntimeError, match="no longer runs trials"):
        after.result(timeout=0)
