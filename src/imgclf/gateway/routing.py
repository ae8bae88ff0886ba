"""Which version answers a request that names none: stable, or the canary for a share of keys.

The registry's state (``imgclf.registry.store``) is re-read at most once a second, so
``imgclf models promote`` / ``rollback`` and share changes take effect within about a second,
without restarts. The canary is sticky per API key: a key's bucket is a hash of its id and the
canary version, and keys whose bucket falls below the share get the canary. A routed version the
backend has not loaded yet is skipped (the request goes to the newest available version), so a
promotion never fails a request.

Example:
    >>> router = TrafficRouter(Registry("registry"), "cats_dogs")
    >>> router.route("key-id")
    Route(version=3, role='stable')
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from imgclf.errors import RegistryError
from imgclf.registry.store import ModelState, Registry

SHADOW = "shadow"


@dataclass(frozen=True)
class Route:
    version: int | None  # None: the newest available version
    role: str  # stable, canary, latest


def bucket(key: str, canary_version: int) -> float:
    """A stable number in [0, 1) for this key and canary (a new canary reshuffles the keys)."""
    digest = hashlib.sha256(f"{key}:{canary_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class TrafficRouter:
    def __init__(
        self,
        registry: Registry,
        model_name: str,
        is_available: Callable[[int], bool] = lambda version: True,
        ttl_seconds: float = 1.0,
    ) -> None:
        self.registry = registry
        self.model_name = model_name
        self.is_available = is_available
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._state: tuple[float, ModelState, list[int]] | None = None

    def state(self) -> ModelState:
        return self._view()[0]

    def _view(self) -> tuple[ModelState, list[int]]:
        """The registry state and the versions that may answer for stable, best first (re-read each ttl)."""
        now = time.monotonic()
        with self._lock:
            if self._state is None or now - self._state[0] > self.ttl_seconds:
                try:
                    state = self.registry.state(self.model_name)
                    self._state = (now, state, self._stable_chain(state))
                except RegistryError:
                    self._state = (now, *self._state[1:]) if self._state else (now, ModelState(), [])
            return self._state[1], self._state[2]

    def _stable_chain(self, state: ModelState) -> list[int]:
        if state.stable is None:  # never promoted: what serves is the newest version that can
            try:
                return [self.registry.serving_version(self.model_name)]
            except RegistryError:
                return []
        chain = [state.stable, *(h["version"] for h in reversed(state.history))]
        return list(dict.fromkeys(chain))

    def route(self, api_key_id: str | None, exclude: frozenset[int] = frozenset()) -> Route:
        """``exclude``: versions the backend just said it does not have (they are skipped)."""
        state, stable_chain = self._view()
        canary = state.canary
        if (
            canary is not None
            and canary not in exclude
            and bucket(api_key_id or "anonymous", canary) < state.canary_share
            and self.is_available(canary)
        ):
            return Route(canary, "canary")
        for version in stable_chain:
            if version not in exclude and self.is_available(version):
                return Route(version, "stable")
        return Route(None, "latest")

    def stable_version(self) -> int | None:
        """The stable version, if it is loaded (canary answers are compared with it)."""
        version = self.state().stable
        return version if version is not None and self.is_available(version) else None

    def shadow_version(self) -> int | None:
        """The version requests are mirrored to (label ``shadow``), if it is loaded."""
        version = self.state().labels.get(SHADOW)
        return version if version is not None and self.is_available(version) else None
