"""Whether the database answers, known without asking it on the request path.

Answering a prediction needs no database (the record goes to the spool), so the gateway starts and
stays ready without one. This watcher brings the schema up to date as soon as the database
answers (at start, or later: migrations are retried in the background) and then checks it every
``interval`` seconds with ``SELECT 1``. A check that takes longer than ``timeout`` counts as down
while it is still waiting, so a hung database (connections accepted, nothing answered) is seen as
quickly as a stopped one. Requests ask ``is_up()``, which never blocks: the prediction log then
spools at once, and key checks that need the database answer 503 at once, instead of waiting.

Example:
    >>> health = DatabaseHealth(engine, interval=2, timeout=3, on_change=metrics.database_up.set)
    >>> health.start()
    >>> health.is_up(), health.status()
    (True, 'ok')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text

from imgclf.storage.database import migrate

log = logging.getLogger(__name__)


class DatabaseHealth:
    def __init__(
        self, engine: Engine, interval: float, timeout: float, on_change: Callable[[int], None] | None = None
    ) -> None:
        self.engine, self.interval, self.timeout = engine, interval, timeout
        self._on_change = on_change or (lambda _up: None)
        self._migrated = False
        self._problem: str | None = "not checked yet"  # None: up
        self._asking_since: float | None = None
        self._reported = 0  # what on_change was last told (1: up)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_now(self) -> bool:
        """Migrate (first time) or ping once, in the calling thread; True if the database answered."""
        self._asking_since = time.monotonic()
        try:
            if not self._migrated:
                migrate(self.engine)
                self._migrated = True
            else:
                with self.engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            self._set(None)
        except Exception as error:  # every driver and pool error means the same here: not answering
            self._set(f"unavailable: {type(error).__name__}")  # no hosts or ports: /readyz is public
        finally:
            self._asking_since = None
        return self._problem is None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.check_now()

        self._thread = threading.Thread(target=loop, name="imgclf-database-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def is_up(self) -> bool:
        return self.status() == "ok"

    def status(self) -> str:
        """``ok``, or why not (without connection details)."""
        asking = self._asking_since
        if asking is not None and time.monotonic() - asking > self.timeout:
            if self._reported:  # the checking thread is stuck: whoever asks first says so
                self._reported = 0
                self._on_change(0)
            return f"not answering for {time.monotonic() - asking:.0f} s"
        return self._problem or "ok"

    def _set(self, problem: str | None) -> None:
        if problem != self._problem:
            if problem is None:
                log.info("the database answers%s", "" if self._migrated else " (schema not migrated)")
            else:
                log.warning("the database is %s; predictions are spooled until it answers", problem)
        self._problem = problem
        self._reported = 0 if problem else 1
        self._on_change(self._reported)
