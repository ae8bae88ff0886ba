"""The gateway's settings: ``GatewaySettings``, read from ``IMGCLF_*`` environment variables.

Also importable as ``imgclf.config.GatewaySettings`` (imported on first use, so that commands
that do not need it start without pydantic-settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """The gateway's settings, from ``IMGCLF_*`` environment variables (or a ``.env`` file).

    With nothing set everything is embedded: a SQLite file, in-memory rate limits, images on
    local disk. ``IMGCLF_DATABASE_URL=postgresql+psycopg://...`` and
    ``IMGCLF_REDIS_URL=redis://...`` switch to the production parts without code changes.
    """

    model_config = SettingsConfigDict(env_prefix="IMGCLF_", env_file=".env", extra="ignore")

    registry: Path = Path("registry")
    model_name: str | None = None  # None: the registry's only model
    backend: str = "local"  # local, grpc://HOST:8500 or http://HOST:8501
    backend_timeout_seconds: float = Field(30, gt=0)
    batching_parameters_file: Path | None = None  # local backend: TF Serving's batching text format
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    database_url: str = "sqlite:///imgclf.db"
    spool_dir: Path = Path("imgclf_spool")  # prediction records wait here while the database is down
    spool_retry_seconds: float = Field(2.0, gt=0)
    # The longest the database may take (connect, statement, a prediction record's write, a health check)
    # before it counts as down: records are then spooled, key checks that need it answer 503.
    database_timeout_seconds: float = Field(3.0, gt=0)
    redis_url: str | None = None
    redis_timeout_seconds: float = Field(0.2, gt=0)  # then Redis is not asked for 5 s (circuit breaker)
    rate_limit_on_redis_failure: Literal["memory", "open", "closed"] = "memory"  # per-process buckets meanwhile
    image_store_dir: Path = Path("imgclf_images")
    image_retention_days: int = Field(90, ge=0)  # 0 keeps images forever
    review_confidence_threshold: float = Field(0.7, ge=0, le=1)
    review_margin: float = Field(0.2, ge=0, le=1)
    # A prediction is out of distribution when its ood_score (distance from the export's reference
    # embeddings over the threshold calibrated at export: ≤ 5 % of reference-like images pass 1) exceeds this.
    ood_score_limit: float = Field(1.0, gt=0)
    review_out_of_distribution: bool = True  # out-of-distribution predictions need review
    # A random share of all answered predictions enters the review queue whatever its confidence (reason
    # "audit"): an unbiased sample for audited accuracy and retraining's evaluation set.
    review_audit_rate: float = Field(0.02, ge=0, le=1)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_images_per_request: int = Field(16, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_image_side: int = Field(10_000, ge=1)
    max_image_frames: int = Field(100, ge=1)  # animated GIF/WebP/PNG frames
    rate_limit_per_minute: float = Field(600, gt=0)
    rate_limit_burst: int = Field(60, ge=1)
    max_request_bytes: int | None = Field(None, ge=1)  # None: room for the image limits, base64 included
    max_header_bytes: int = Field(16 * 1024, ge=1024)  # request line + headers; more is 431 and a closed connection
    body_read_timeout_seconds: float = Field(20, gt=0)  # a body with no new byte for this long: 408
    # Upload bytes all requests of one process may hold at once (declared Content-Length, or counted as a
    # chunked body streams in); a request that would pass it gets 503 + Retry-After before its body is read.
    # None: 256 MiB, or one largest request if that is more.
    max_bytes_in_flight: int | None = Field(None, ge=1)
    auth_cache_seconds: float = Field(30, ge=0)  # how long a checked key is trusted without the database
    metrics_require_key: bool = False  # /metrics only with a key of scope metrics (or admin)
    docs_require_key: bool = False  # /openapi.json, /docs and /redoc only with a valid key
    retry_after_seconds: int = Field(5, ge=1)  # told to clients when the model backend is unavailable
    shutdown_grace_seconds: float = Field(30, ge=0)
    log_level: str = "info"
    # Canary requests are also classified by stable in the background (not stored, not returned) to count
    # how often the two agree (imgclf_gateway_agreement_total); costs stable the canary's share of work.
    canary_comparison: bool = True
    # Shadow copies and canary comparisons wait for this long a gap without requests (0: run at once) and are
    # dropped (imgclf_gateway_shadow_dropped_total) when none comes within shadow_max_wait_seconds.
    shadow_quiet_ms: float = Field(20, ge=0)
    shadow_max_wait_seconds: float = Field(5, gt=0)
    # Drift monitoring (imgclf.monitoring.drift): the gateway's periodic check and `imgclf monitor drift`.
    drift_interval_seconds: float = Field(300, ge=0)  # 0 turns the gateway's periodic check off
    drift_window: int = Field(1000, ge=1)  # newest predictions per version compared with the reference
    drift_lookback_hours: float = Field(24, gt=0)  # versions without predictions this recent are not checked
    drift_psi: float = Field(0.25, gt=0)
    drift_js_distance: float = Field(0.2, gt=0, le=1)
    drift_ks_p_value: float = Field(0.01, gt=0, lt=1)
    drift_mmd_p_value: float = Field(0.01, gt=0, lt=1)
    drift_accuracy_drop: float = Field(0.05, gt=0, le=1)
    drift_min_window: int = Field(50, ge=2)
    drift_permutations: int = Field(500, ge=10)
    # The web console under /ui (imgclf.gateway.console): people sign in with an API key.
    console_enabled: bool = True
    # Signs the console's session cookies. None: a random secret kept in spool_dir/.console-secret, shared by
    # the workers of one machine; set it (the same on every replica) when several machines serve the console.
    console_secret: SecretStr | None = None
    console_session_hours: float = Field(8, gt=0)  # a session cookie expires this long after sign-in

    @property
    def bytes_in_flight_limit(self) -> int:
        """The upload budget of one process (see ``max_bytes_in_flight``); at least one largest request."""
        return max(self.max_bytes_in_flight or 256 * 1024 * 1024, self.request_body_limit)

    @property
    def request_body_limit(self) -> int:
        """The most bytes one request body may have (checked while it streams in)."""
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return self.max_upload_bytes * self.max_images_per_request * 4 // 3 + 64 * 1024
