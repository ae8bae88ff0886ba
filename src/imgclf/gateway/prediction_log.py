"""The durable prediction log: straight to the database, or to a disk spool while it is down.

Every answered prediction is recorded before its answer is sent. ``write`` hands the rows to one
writer thread, which commits everything waiting in one transaction (group commit: no lock
contention between request threads, one commit for many requests under load) and then releases
the waiting requests. If the database does not answer, the rows go to a spool file instead
(written to a temporary name, fsynced, then renamed, so a spool file is always complete) and the
requests are still answered. A request waits at most ``write_timeout`` for the database (a hung
server accepts connections and answers nothing) and spools its rows itself after that; while the
database is known to be down (``database_up``) rows are spooled without waiting at all.
A background thread replays spool files once the database answers again. Replays are
idempotent (rows whose id is already stored are skipped) and a file is claimed by renaming it,
so several gateway workers can share one spool directory.

Example:
    >>> log = PredictionLog(engine, Path("imgclf_spool"))
    >>> log.start(retry_seconds=2)
    >>> log.write([{"id": ..., "label": "cats", ...}])   # blocks until stored (True) or spooled (False)
    True
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from imgclf.storage.predictions import insert_predictions

log = logging.getLogger(__name__)

SPOOL_SUFFIX = ".jsonl"


def _encode(row: dict[str, Any]) -> str:
    return json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()})


def _decode(line: str) -> dict[str, Any]:
    row = json.loads(line)
    for key in ("created_at", "reviewed_at"):
        if row.get(key):
            row[key] = datetime.fromisoformat(row[key])
    return row


class PredictionLog:
    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        on_change: Callable[[int], None] | None = None,
        max_batch_rows: int = 512,
        database_up: Callable[[], bool] = lambda: True,
        write_timeout: float | None = None,
    ) -> None:
        self.engine = engine
        self.database_up = database_up  # False: spool at once instead of waiting for a dead database
        self.write_timeout = write_timeout  # a write waiting longer is spooled by its request instead
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_batch_rows = max_batch_rows
        self._on_change = on_change or (lambda _pending: None)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._queue: queue.Queue[tuple[list[dict[str, Any]], Future[bool]] | None] = queue.Queue()
        self._on_change(self.pending_files())

    def write(self, rows: list[dict[str, Any]]) -> bool:
        """Store ``rows`` durably; True if they reached the database, False if they were spooled."""
        if not self.database_up():
            self._spool(rows)
            return False
        if not self._threads or self._stop.is_set():
            return self._store([rows])
        future: Future[bool] = Future()
        self._queue.put((rows, future))
        try:
            return future.result(timeout=self.write_timeout)
        except FuturesTimeout:
            # The database accepted the connection but does not answer (hung, overloaded): this
            # request's rows go to the spool now. If the writer stores them later as well, the
            # spool's replay skips ids already stored.
            if future.cancel() or not future.done():
                log.warning("database write took over %s s; spooling %d prediction(s)", self.write_timeout, len(rows))
                self._spool(rows)
                return False
            return future.result()

    def _store(self, groups: list[list[dict[str, Any]]]) -> bool:
        rows = [row for group in groups for row in group]
        try:
            insert_predictions(self.engine, rows, skip_existing=False)
            return True
        except SQLAlchemyError as error:
            log.warning("database write failed, spooling %d prediction(s): %s", len(rows), str(error).splitlines()[0])
        self._spool(rows)
        return False

    def _write_batches(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item[0])
            while size < self.max_batch_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
                size += len(item[0])
            batch = [(rows, future) for rows, future in batch if future.set_running_or_notify_cancel()]
            if not batch:  # every request gave up waiting and spooled its own rows
                continue
            try:
                stored = self._store([rows for rows, _ in batch])
            except Exception as error:  # the spool itself failed (disk full...): the requests must know
                for _, future in batch:
                    future.set_exception(error)
                continue
            for _, future in batch:
                future.set_result(stored)

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        name = f"{uuid.uuid4().hex}{SPOOL_SUFFIX}"
        temporary = self.spool_dir / f".tmp-{name}"
        with temporary.open("w", encoding="utf-8") as handle:
            handle.writelines(_encode(row) + "\n" for row in rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.spool_dir / name)
        self._on_change(self.pending_files())

    def _spool_files(self) -> list[Path]:
        """Finished spool files, oldest first. Names starting with a dot are files being written
        (``.tmp-``) or replayed (``.claimed-``) right now: pathlib's ``*`` matches them too."""
        found = []
        for path in self.spool_dir.glob(f"*{SPOOL_SUFFIX}"):
            if path.name.startswith("."):
                continue
            try:
                found.append((path.stat().st_mtime, path))
            except FileNotFoundError:  # replayed by another worker meanwhile
                continue
        return [path for _, path in sorted(found)]

    def pending_files(self) -> int:
        return len(self._spool_files())

    def replay(self) -> int:
        """Write spooled rows to the database; returns how many rows were stored. Stops at the first failure."""
        stored = 0
        for path in self._spool_files():
            claimed = path.with_name(f".claimed-{os.getpid()}-{path.name}")
            try:
                os.rename(path, claimed)  # another worker may have claimed it first
            except FileNotFoundError:
                continue
            rows = [_decode(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line]
            try:
                stored += insert_predictions(self.engine, rows)
            except SQLAlchemyError as error:
                os.rename(claimed, path)
                log.info("database still unavailable; %d spool file(s) wait: %s", self.pending_files(), error)
                break
            claimed.unlink()
        if stored:
            log.info("replayed %d spooled prediction(s) into the database", stored)
        self._on_change(self.pending_files())
        return stored

    def start(self, retry_seconds: float) -> None:
        """Start the writer thread, and replay the spool now and every ``retry_seconds``."""
        self._recover_claims()
        for target, name, args in (
            (self._write_batches, "imgclf-prediction-log", ()),
            (self._replay_periodically, "imgclf-spool", (retry_seconds,)),
        ):
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _recover_claims(self) -> None:
        """Files claimed by a process that died before finishing go back to the spool."""
        for claimed in self.spool_dir.glob(f".claimed-*{SPOOL_SUFFIX}"):
            pid = int(claimed.name.split("-")[1])
            if not _process_alive(pid):
                os.rename(claimed, self.spool_dir / claimed.name.split("-", 2)[2])

    def _replay_periodically(self, retry_seconds: float) -> None:
        while not self._stop.wait(retry_seconds):
            if self.pending_files():
                try:
                    self.replay()
                except Exception:  # never let the replay thread die
                    log.exception("spool replay failed")

    def stop(self) -> None:
        """Write what is queued, stop the threads, make one last replay attempt (the rest stays spooled)."""
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        while True:  # anything queued after the writer stopped is written here
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_result(self._store([item[0]]))
        if self.pending_files():
            self.replay()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
