"""The virtual clock: jumps over idle training, charges the agent's work, lands in time order."""

import queue
import threading

import pytest
from fakes import ManualTime

from asap.tools.trials.clock import Clock, ClockError, VirtualClock, make_clock


@pytest.fixture
def manual():
    source = ManualTime()
    clock = VirtualClock(origin=1000.0, source=source)
    yield clock, source
    clock.close()


def land(clock: VirtualClock, at: float, into: queue.SimpleQueue, name: str) -> None:
    clock.hold()
    clock.at(at, lambda t: into.put((name, t)), held=True)


def test_waiting_jumps_to_the_landing_and_nothing_else_moves_time(manual):
    clock, _ = manual
    landed = queue.SimpleQueue()
    land(clock, 1000.0 + 3600, landed, "a")
    assert clock.take(landed) == ("a", 4600.0)
    assert clock.now() == 4600.0  # an hour passed on the clock, none for real


def test_landings_come_in_time_order_whatever_order_they_were_scheduled(manual):
    clock, _ = manual
    landed = queue.SimpleQueue()
    land(clock, 1030.0, landed, "late")
    land(clock, 1010.0, landed, "early")
    land(clock, 1020.0, landed, "middle")
    assert [clock.take(landed)[0] for _ in range(3)] == ["early", "middle", "late"]
    assert clock.now() == 1030.0


def test_a_result_still_computing_holds_the_jump(manual):
    """A trial whose result is not in yet may land first: no jump until it is scheduled."""
    clock, _ = manual
    landed = queue.SimpleQueue()
    land(clock, 1100.0, landed, "long")
    clock.hold()  # a second trial, still computing
    taker = threading.Thread(target=lambda: landed.put(("got", clock.take(landed))))
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and clock.now() == 1000.0  # no jump while it computes
    clock.at(1005.0, lambda t: landed.put(("short", t)), held=True)
    taker.join()
    assert landed.get_nowait() == ("got", ("short", 1005.0))


def test_overlapping_work_shorter_than_the_trial_is_charged_nothing(manual):
    clock, source = manual
    landed = queue.SimpleQueue()
    land(clock, 1010.0, landed, "trial")
    with clock.busy():  # a speculative call of 3 s beside a 10-s trial
        source.advance(3.0)
    assert clock.take(landed) == ("trial", 1010.0)
    assert clock.now() == 1010.0


def test_overlapping_work_longer_than_the_trial_is_charged_the_excess(manual):
    clock, source = manual
    landed = queue.SimpleQueue()
    land(clock, 1010.0, landed, "trial")
    with clock.busy():  # a 15-s call beside a 10-s trial: the trial lands at 10, on time
        source.advance(15.0)
    assert clock.take(landed) == ("trial", 1010.0)
    assert clock.now() == 1015.0  # the next decision can start only when the call is done


def test_work_begun_in_one_thread_and_ended_in_another_holds_the_clock(manual):
    clock, source = manual
    landed = queue.SimpleQueue()
    land(clock, 1010.0, landed, "trial")
    clock.begin()
    done = threading.Event()

    def background() -> None:
        source.advance(4.0)
        clock.end()
        done.set()
    taker = threading.Thread(target=lambda: landed.put(("got", clock.take(landed))))
    taker.start()
    taker.join(0.2)
    assert taker.is_alive()  # the background call is running: no jump past it
    threading.Thread(target=background).start()
    taker.join()
    assert done.is_set() and landed.get_nowait() == ("got", ("trial", 1010.0))


def test_critical_work_is_charged_in_full(manual):
    clock, source = manual
    landed = queue.SimpleQueue()
    source.advance(2.0)  # a decision on the critical path: nothing trains
    land(clock, clock.now() + 10.0, landed, "trial")
    assert clock.take(landed) == ("trial", 1012.0)


def test_real_time_flows_on_the_virtual_clock():
    clock = VirtualClock(origin=0.0)
    try:
        first = clock.now()
        threading.Event().wait(0.05)
        assert clock.now() > first
    finally:
        clock.close()


def test_the_real_clock_runs_events_at_once():
    clock, got = make_clock("real"), []
    assert type(clock) is Clock and not clock.virtual
    clock.at(5.0, got.append)
    assert got == [5.0]


def test_an_unknown_clock_is_refused_by_name():
    with pytest.raises(ClockError, match="unknown clock 'sundial'.*real, virtual"):
        make_clock("sundial")
