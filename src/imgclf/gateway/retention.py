"""Image retention: uploads older than ``IMGCLF_IMAGE_RETENTION_DAYS`` leave the image store.

Reviewed images are kept whatever their age: they are training data now. The gateway prunes at
start and then every ``interval_seconds`` (hourly) in a background thread; 0 days keeps all.

Example:
    >>> prune_images(engine, ImageStore(Path("imgclf_images")), older_than_days=90)
    1234
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from imgclf.storage.database import session_scope
from imgclf.storage.image_store import ImageStore
from imgclf.storage.models import Prediction

log = logging.getLogger(__name__)


def prune_images(engine: Engine, store: ImageStore, older_than_days: float) -> int:
    """Delete unreviewed images not uploaded for ``older_than_days``; returns how many went."""
    with session_scope(engine) as session:
        query = select(Prediction.image_sha256).where(Prediction.review_label.is_not(None)).distinct()
        reviewed = set(session.scalars(query))
    return store.prune(older_than_days, keep=reviewed)


class RetentionWorker:
    def __init__(self, engine: Engine, store: ImageStore, days: float, interval_seconds: float = 3600) -> None:
        self.engine, self.store, self.days, self.interval = engine, store, days, interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.days > 0:
            self._thread = threading.Thread(target=self._run, name="imgclf-retention", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                removed = prune_images(self.engine, self.store, self.days)
                if removed:
                    log.info("pruned %d image(s) older than %s days", removed, self.days)
            except (SQLAlchemyError, OSError) as error:  # try again next time
                log.warning("image pruning skipped: %s", str(error).splitlines()[0])
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
