"""Work done after a request is answered: shadow copies and canary comparisons.

Requests are mirrored to the registry's ``shadow`` version (results stored with role ``shadow``,
never in the review queue, never returned), and canary-answered requests are classified by stable
to count agreement. One background thread does both. The queue is bounded: when the shadow falls behind, copies
are dropped and counted rather than slowing or piling up behind the answers clients wait for.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class ShadowMirror:
    def __init__(self, max_pending: int = 64, on_drop: Callable[[], None] = lambda: None) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_pending)
        self._on_drop = on_drop
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
                job()
            except Exception as error:  # the shadow must never affect anything else
                log.warning("shadow prediction failed: %s", error)
            finally:
                self._jobs.task_done()

    def drain(self, timeout: float = 30) -> None:
        """Wait until queued copies are done (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._jobs.join(), done.set()), daemon=True).start()
        done.wait(timeout)

    def stop(self) -> None:
        self.drain(10)
        self._jobs.put(None)
        self._thread.join(10)
