"""uvicorn for imgclf's services: drains on SIGTERM and then exits normally.

uvicorn stops accepting on SIGTERM/SIGINT and finishes in-flight requests, then re-raises the
signal, which would kill the process before the service's own shutdown (batching queues, the
gRPC grace period, the prediction spool) completes. ``DrainingServer`` tells the owner when the
signal arrives and lets it finish and exit 0.
"""

from __future__ import annotations

from collections.abc import Callable

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig, frame) -> None:  # type: ignore[no-untyped-def]
        if self._on_exit is not None:
            self._on_exit()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # no re-raise: the owner drains and exits normally
