"""Who is calling: API keys checked against the database, with a short-lived cache.

The cache keeps hot paths off the database (one lookup per key per ``cache_seconds``) and keeps
prediction traffic flowing while the database is down: a key checked before the outage stays
trusted until the database answers again. A key revoked while the database is up is refused
within ``cache_seconds``. A key never seen before cannot be checked without the database: that
request gets 503.

Example:
    >>> authenticator = Authenticator(engine, cache_seconds=30)
    >>> authenticator.authenticate("ik_3fa9c2d1_...").scopes
    ('predict',)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from imgclf.errors import DatabaseUnavailableError
from imgclf.gateway.api_keys import KeyInfo, authenticate

MAX_CACHED_KEYS = 10_000  # valid keys remembered (least recently checked dropped first)
MAX_CACHED_MISSES = 10_000  # unknown or revoked keys remembered, apart: they never push out valid ones


class Authenticator:
    """Checks keys; valid keys and misses are cached apart, so a flood of made-up keys (which needs no
    credentials) cannot push the valid ones out and leave real clients at 503 during an outage."""

    def __init__(
        self,
        engine: Engine,
        cache_seconds: float = 30,
        clock: Callable[[], float] = time.monotonic,
        database_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.database_up = database_up  # False: the database is known to be down; do not wait on it
        self._cache: dict[str, tuple[float, KeyInfo]] = {}
        self._misses: dict[str, float] = {}
        self._lock = threading.Lock()

    def _cached(self, digest: str) -> tuple[float, KeyInfo | None] | None:
        with self._lock:
            known = self._cache.get(digest)
            if known is not None:
                return known
            missed = self._misses.get(digest)
        return None if missed is None else (missed, None)

    def _remember(self, digest: str, now: float, info: KeyInfo | None) -> None:
        with self._lock:
            if info is None:
                self._cache.pop(digest, None)  # revoked: forget it as a valid key
                if len(self._misses) >= MAX_CACHED_MISSES:
                    self._misses.clear()
                self._misses[digest] = now
                return
            self._misses.pop(digest, None)
            self._cache.pop(digest, None)  # re-inserted last: the dict's order is least recently checked first
            if len(self._cache) >= MAX_CACHED_KEYS:
                del self._cache[next(iter(self._cache))]
            self._cache[digest] = (now, info)

    def is_cached(self, presented: str | None) -> bool:
        """Whether ``authenticate(presented)`` answers from the cache, without the database."""
        if not presented:
            return True
        cached = self._cached(hashlib.sha256(presented.encode()).hexdigest())
        return cached is not None and self.clock() - cached[0] < self.cache_seconds

    def authenticate(self, presented: str | None) -> KeyInfo | None:
        """The key's info, or None for a missing, unknown or revoked key."""
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        now = self.clock()
        cached = self._cached(digest)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            if not self.database_up():
                raise DatabaseUnavailableError("known to be down")
            info = authenticate(self.engine, presented)
        except (SQLAlchemyError, DatabaseUnavailableError):
            if cached is not None and cached[1] is not None:
                return cached[1]  # the database is down: trust what it said last
            raise DatabaseUnavailableError("the database does not answer, so the API key cannot be checked") from None
        self._remember(digest, now, info)
        return info
