"""The ``Gateway``: everything a request needs (database, backend, auth, limits, logs), built once
per process from ``GatewaySettings``. Routes receive it through ``dependencies.get_gateway``; the
app factory (``imgclf.gateway.app``) builds it when the app starts.

Example:
    >>> gateway = Gateway.from_settings(GatewaySettings(registry=Path("registry")))
    >>> gateway.readiness()
    {'model': 'ok', 'database': 'ok'}
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine

from imgclf.config import GatewaySettings
from imgclf.contract import version_directories
from imgclf.data.image_validation import UploadLimits
from imgclf.errors import ConfigError, DatabaseUnavailableError
from imgclf.gateway.auth import Authenticator
from imgclf.gateway.backends import LocalBackend, ModelBackend, create_backend
from imgclf.gateway.database_health import DatabaseHealth
from imgclf.gateway.drift_monitor import DriftMonitor
from imgclf.gateway.metrics import GatewayMetrics
from imgclf.gateway.prediction_log import PredictionLog
from imgclf.gateway.rate_limit import RateLimiter, RedisRateLimiter, create_rate_limiter
from imgclf.gateway.retention import RetentionWorker
from imgclf.gateway.routing import TrafficRouter
from imgclf.gateway.service import ModelCards, PredictionService, ReviewPolicy
from imgclf.gateway.shadow import LiveRequests, ShadowMirror
from imgclf.registry.store import Registry
from imgclf.storage.database import create_database_engine
from imgclf.storage.image_store import ImageStore

log = logging.getLogger(__name__)

T = TypeVar("T")
# Request threads: each waits on the model or the database most of the time.
REQUEST_THREADS = 64


def resolve_model_name(registry: Path, model_name: str | None) -> str:
    """The model to serve: as given, or the registry's only model."""
    if model_name:
        return model_name
    models = sorted(
        p.name for p in Path(registry).glob("*") if p.is_dir() and version_directories(p)
    )
    if len(models) != 1:
        found = ", ".join(models) or "none"
        raise ConfigError(f"registry {registry} holds {len(models)} models ({found}); choose one with --model")
    return models[0]


@dataclass
class Gateway:
    """Everything a request needs, built once per process."""

    settings: GatewaySettings
    engine: Engine
    database: DatabaseHealth
    backend: ModelBackend
    authenticator: Authenticator
    rate_limiter: RateLimiter
    prediction_log: PredictionLog
    service: PredictionService
    metrics: GatewayMetrics
    retention: RetentionWorker
    drift_monitor: DriftMonitor
    live_requests: LiveRequests  # counted by the middleware; background work waits for gaps
    request_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="imgclf-request")
    )

    @classmethod
    def from_settings(
        cls,
        settings: GatewaySettings,
        backend: ModelBackend | None = None,
        metrics: GatewayMetrics | None = None,
        live_requests: LiveRequests | None = None,
    ) -> Gateway:
        metrics = metrics or GatewayMetrics()
        live_requests = live_requests or LiveRequests()
        engine = create_database_engine(settings.database_url, settings.database_timeout_seconds)
        database = DatabaseHealth(
            engine, settings.spool_retry_seconds, settings.database_timeout_seconds, metrics.database_up.set
        )
        if not database.check_now():  # migrates when it answers; otherwise retried in the background
            log.warning("starting without the database (%s): predictions are spooled until it answers",
                        database.status())  # fmt: skip
        database.start()
        model_name = resolve_model_name(settings.registry, settings.model_name)
        if backend is None:
            backend = create_backend(
                settings.backend,
                settings.registry,
                model_name,
                settings.backend_timeout_seconds,
                settings.batching_parameters_file,
            )
        prediction_log = PredictionLog(
            engine, settings.spool_dir, on_change=metrics.spool_files.set, database_up=database.is_up,
            write_timeout=settings.database_timeout_seconds,
        )  # fmt: skip
        prediction_log.start(settings.spool_retry_seconds)
        limits = UploadLimits.from_settings(settings)
        policy = ReviewPolicy.from_settings(settings)
        store = ImageStore(settings.image_store_dir)
        retention = RetentionWorker(engine, store, settings.image_retention_days)
        retention.start()
        router = TrafficRouter(Registry(settings.registry), model_name, is_available=backend.is_available)
        shadow = ShadowMirror(
            on_drop=metrics.shadow_dropped.inc,
            live=live_requests,
            quiet=settings.shadow_quiet_ms / 1000,
            max_wait=settings.shadow_max_wait_seconds,
        )
        service = PredictionService(
            backend, ModelCards(settings.registry), store, prediction_log, limits, policy, metrics, router, shadow,
            compare_canary=settings.canary_comparison,
        )  # fmt: skip
        if isinstance(backend, LocalBackend):
            metrics.extra_registries.append(backend.serving_metrics.registry)
        drift_monitor = DriftMonitor(engine, settings, model_name, metrics)
        drift_monitor.start()
        return cls(
            settings=settings,
            engine=engine,
            backend=backend,
            database=database,
            authenticator=Authenticator(engine, settings.auth_cache_seconds, database_up=database.is_up),
            rate_limiter=create_rate_limiter(
                settings.rate_limit_per_minute,
                settings.rate_limit_burst,
                settings.redis_url,
                settings.rate_limit_on_redis_failure,
                settings.redis_timeout_seconds,
                metrics.redis_up.set,
            ),  # fmt: skip
            prediction_log=prediction_log,
            service=service,
            metrics=metrics,
            retention=retention,
            drift_monitor=drift_monitor,
            live_requests=live_requests,
        )

    async def run_blocking(self, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` in a request thread, with the caller's context (its request id in logs).

        A plain executor: AnyIO's ``run_in_threadpool`` costs about 0.1 ms of CPU per call, this
        about 0.04 ms (``benchmarks/RESULTS.md``, gateway), and every prediction makes one call.
        """
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.request_threads, context.run, func, *args)

    def readiness(self) -> dict[str, str]:
        """``ok`` or what is wrong, for the model backend (what readiness means: predictions can be
        answered) and, reported beside it, the database (without connection details)."""
        checks = {
            "model": "ok" if self.backend.ready() else "no AVAILABLE model version",
            "database": self.database.status(),
        }
        if isinstance(self.rate_limiter, RedisRateLimiter):
            checks["redis"] = self.rate_limiter.status()
        return checks

    def require_database(self) -> None:
        """Fail at once, instead of waiting on a connection, while the database is known to be down."""
        if not self.database.is_up():
            raise DatabaseUnavailableError(f"the database is {self.database.status()}")

    def close(self) -> None:
        """Finish queued model work, write what the spool holds if the database answers, release connections."""
        self.request_threads.shutdown(wait=True)
        self.database.stop()
        self.retention.stop()
        self.drift_monitor.stop()
        if self.service.shadow is not None:
            self.service.shadow.stop()
        self.backend.close()
        self.prediction_log.stop()
        self.engine.dispose()
