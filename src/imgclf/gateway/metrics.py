"""The gateway's Prometheus metrics (``GET /metrics``), named by Prometheus conventions.

One ``GatewayMetrics`` per app, in its own registry (no global state). Under gunicorn with
several workers set ``PROMETHEUS_MULTIPROC_DIR`` (the shipped ``gunicorn.conf.py`` does): every
worker writes its samples there and ``/metrics`` aggregates all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10)
BYTES_BUCKETS = tuple(2**i for i in range(10, 25, 2))  # 1 KiB .. 16 MiB


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "imgclf_gateway_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "imgclf_gateway_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upload_bytes = Histogram(
            "imgclf_gateway_upload_bytes", "Size of each uploaded image in bytes.", buckets=BYTES_BUCKETS, registry=r
        )
        self.predictions = Counter(
            "imgclf_gateway_predictions", "Images classified, by model, version and label.",
            ["model", "version", "label"], registry=r,
        )  # fmt: skip
        self.needs_review = Counter(
            "imgclf_gateway_needs_review", "Predictions flagged for human review.", ["model", "version"], registry=r
        )
        self.confidence = Histogram(
            "imgclf_gateway_prediction_confidence", "Confidence of each prediction.", ["model", "version"],
            buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0), registry=r,
        )  # fmt: skip
        self.rate_limited = Counter("imgclf_gateway_rate_limited", "Requests refused with 429.", registry=r)
        self.upload_rejections = Counter(
            "imgclf_gateway_upload_rejections", "Uploads refused by validation, by reason.", ["code"], registry=r
        )
        self.spooled = Counter(
            "imgclf_gateway_spooled_predictions", "Prediction records spooled to disk (database down).", registry=r
        )
        self.spool_files = Gauge(
            "imgclf_gateway_spool_files", "Spool files waiting for the database.", registry=r, multiprocess_mode="max"
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
