"""Background work (shadow copies, canary comparisons) yields to live requests."""

from __future__ import annotations

import threading
import time

from imgclf.gateway.shadow import LiveRequests, ShadowMirror


def wait_until(condition, timeout: float = 5) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_jobs_wait_for_a_quiet_gap_in_the_traffic():
    live, ran = LiveRequests(), threading.Event()
    mirror = ShadowMirror(live=live, quiet=0.05, max_wait=5)
    try:
        live.enter()  # a request in flight
        mirror.submit(ran.set)
        assert not ran.wait(0.3), "ran while a request was in flight"
        live.exit()
        started = time.monotonic()
        assert ran.wait(2)
        assert time.monotonic() - started >= 0.04, "did not wait for the quiet period"
    finally:
        mirror.stop()


def test_jobs_without_a_gap_are_dropped_and_counted():
    live, ran, dropped = LiveRequests(), threading.Event(), []
    mirror = ShadowMirror(live=live, quiet=0.05, max_wait=0.2, on_drop=lambda: dropped.append(1))
    try:
        live.enter()
        mirror.submit(ran.set)
        wait_until(lambda: dropped == [1])  # dropped once max_wait passed without a gap
        assert not ran.is_set()
        live.exit()
        mirror.submit(ran.set)  # traffic gone: the next job runs
        assert ran.wait(2)
    finally:
        mirror.stop()


def test_a_full_queue_drops_at_once_and_quiet_zero_runs_at_once():
    dropped: list[int] = []
    gate = threading.Event()
    mirror = ShadowMirror(max_pending=1, live=LiveRequests(), quiet=0, on_drop=lambda: dropped.append(1))
    try:
        started = threading.Event()
        mirror.submit(lambda: (started.set(), gate.wait()))  # occupies the worker
        assert started.wait(5)
        assert mirror.submit(lambda: None) and not mirror.submit(lambda: None)
        assert dropped == [1]
    finally:
        gate.set()
        mirror.stop()
