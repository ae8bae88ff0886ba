"""Work done after a request is answered: shadow copies and canary comparisons.

Requests are mirrored to the registry's ``shadow`` version (results stored with role ``shadow``,
never in the review queue, never returned), and canary-answered requests are classified by stable
to count agreement. One background thread does both, and it yields to live traffic: a job starts
only once no request has been in flight for ``quiet`` seconds (``LiveRequests``, counted by the
middleware until each response is sent). A job that finds no such gap within ``max_wait`` seconds
is dropped, and so is a copy that finds the queue full; both are counted. So under a saturating
load the shadow sees a sample of the traffic instead of slowing the answers clients wait for.

Example:
    >>> live = LiveRequests()
    >>> mirror = ShadowMirror(live=live, quiet=0.02, max_wait=5)
    >>> mirror.submit(lambda: print("runs after 20 ms without requests"))
    True
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class LiveRequests:
    """How many requests are in flight in this process, and since when none has been."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._idle_since = time.monotonic()

    def enter(self) -> None:
        with self._changed:
            self._count += 1

    def exit(self) -> None:
        with self._changed:
            self._count -= 1
            if self._count == 0:
                self._idle_since = time.monotonic()
                self._changed.notify_all()

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Block until no request has been in flight for ``quiet`` seconds; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                now = time.monotonic()
                if self._count == 0 and now - self._idle_since >= quiet:
                    return True
                if now >= deadline:
                    return False
                pause = deadline - now if self._count else min(deadline - now, quiet - (now - self._idle_since))
                self._changed.wait(pause)


class ShadowMirror:
    def __init__(
        self,
        max_pending: int = 64,
        on_drop: Callable[[], None] = lambda: None,
        live: LiveRequests | None = None,
        quiet: float = 0.02,
        max_wait: float = 5.0,
    ) -> None:
        """``live=None`` (or ``quiet=0``): run jobs at once, competing with answered requests."""
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_pending)
        self._on_drop = on_drop
        self._live = live if quiet > 0 else None
        self._quiet, self._max_wait = quiet, max_wait
        self._thread = threading.Thread(target=self._run, name="imgclf-shadow", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (and counted) when the queue is full."""
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._on_drop()
            return False
        return True

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._live is not None and not self._live.wait_quiet(self._quiet, self._max_wait):
                    self._on_drop()  # no gap in the traffic: answered requests come first
                    continue
                job()
            except Exception as error:  # the shadow must never affect anything else
                log.warning("shadow prediction failed: %s", error)
            finally:
                self._jobs.task_done()

    def drain(self, timeout: float = 30) -> None:
        """Wait until queued jobs are done (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._jobs.join(), done.set()), daemon=True).start()
        done.wait(timeout)

    def stop(self) -> None:
        self.drain(10)
        self._jobs.put(None)
        self._thread.join(10)
