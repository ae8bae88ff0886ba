"""The gateway's Prometheus metrics (``GET /metrics``), named by Prometheus conventions.

One ``GatewayMetrics`` per app, in its own registry (no global state). Under gunicorn with
several workers set ``PROMETHEUS_MULTIPROC_DIR`` (the shipped ``gunicorn.conf.py`` does): every
worker writes its samples there and ``/metrics`` aggregates all of them.

The ``imgclf_drift_*``, ``imgclf_model_*`` gauges come from the periodic drift check
(``imgclf.gateway.drift_monitor``); with several workers the most recent value wins. With the
local backend, the model server's own series (batch sizes, queueing) are exported here too.
"""

from __future__ import annotations

import contextlib
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
        self.redis_up = Gauge(
            "imgclf_gateway_redis_up", "1 if Redis answers the rate limiter (0: limits use the fallback).",
            registry=r, multiprocess_mode="min",
        )  # fmt: skip
        self.database_up = Gauge(
            "imgclf_gateway_database_up", "1 if the database answers (0: predictions are spooled).",
            registry=r, multiprocess_mode="min",
        )  # fmt: skip
        self.spool_files = Gauge(
            "imgclf_gateway_spool_files", "Spool files waiting for the database.", registry=r, multiprocess_mode="max"
        )
        self.routed = Counter(
            "imgclf_gateway_routed_predictions",
            "Images classified, by the answering version and why it was chosen (stable, canary, latest, requested).",
            ["model", "version", "role"], registry=r,
        )  # fmt: skip
        self.model_latency = Histogram(
            "imgclf_gateway_predict_duration_seconds",
            "Validation + model + decision time of a predict request, by the version that answered and its role.",
            ["model", "version", "role"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.backend_errors = Counter(
            "imgclf_gateway_backend_errors",
            "Predict requests the model failed (not refused input), by the version routed to and its role.",
            ["model", "version", "role"], registry=r,
        )  # fmt: skip
        self.agreement = Counter(
            "imgclf_gateway_agreement",
            "Canary and shadow predictions by whether their label agreed with stable's (canary) or with the"
            " answered one (shadow), by the canary or shadow version.",
            ["model", "version", "role", "agree"], registry=r,
        )  # fmt: skip
        self.shadow_dropped = Counter(
            "imgclf_gateway_shadow_dropped", "Shadow copies and canary comparisons dropped (queue full).", registry=r
        )
        per_version = ["model", "version"]

        def gauge(name: str, documentation: str, labels: list[str] = per_version) -> Gauge:
            return Gauge(name, documentation, labels, registry=r, multiprocess_mode="mostrecent")

        self.drift_detected = gauge("imgclf_drift_detected", "1 when the last drift check found drift, else 0.")
        self.drift_statistic = gauge(
            "imgclf_drift_statistic", "Statistic of each drift test (PSI, JS, KS, MMD²).", [*per_version, "test"]
        )
        self.drift_p_value = gauge(
            "imgclf_drift_p_value", "p-value of each drift test that has one.", [*per_version, "test"]
        )
        self.drift_test_failed = gauge(
            "imgclf_drift_test_drifted", "1 when the drift test crossed its threshold.", [*per_version, "test"]
        )
        self.drift_window = gauge("imgclf_drift_window_predictions", "Predictions in the last drift check's window.")
        self.drift_checked = gauge("imgclf_drift_last_check_timestamp_seconds", "When the last drift check ran.")
        self.estimated_accuracy = gauge(
            "imgclf_model_estimated_accuracy", "Accuracy estimated from calibrated confidence (CBPE) over the window."
        )
        self.reference_accuracy = gauge("imgclf_model_reference_accuracy", "Accuracy on the reference images.")
        self.realized_accuracy = gauge("imgclf_model_realized_accuracy", "Share of reviewed predictions found right.")
        self.reviewed = gauge("imgclf_model_reviewed_predictions", "Reviewed predictions in the window.")
        self.window_needs_review = gauge("imgclf_model_needs_review_ratio", "Share of the window flagged for review.")
        self.window_confidence = gauge("imgclf_model_mean_confidence", "Mean confidence over the window.")
        self.extra_registries: list[CollectorRegistry] = []  # e.g. the local backend's model-server series

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return b"".join(generate_latest(registry) for registry in (self.registry, *self.extra_registries))

    def _drift_gauges(self) -> tuple[list[Gauge], list[Gauge]]:
        per_version = [
            self.drift_detected, self.drift_window, self.drift_checked, self.estimated_accuracy,
            self.reference_accuracy, self.realized_accuracy, self.reviewed, self.window_needs_review,
            self.window_confidence,
        ]  # fmt: skip
        return per_version, [self.drift_statistic, self.drift_p_value, self.drift_test_failed]

    def forget_drift(self, report) -> None:  # type: ignore[no-untyped-def]
        """Drop the gauges of a version that is no longer checked (no recent traffic), so no alert sticks."""
        labels = (report.model_name, str(report.model_version))
        per_version, per_test = self._drift_gauges()
        for gauge in per_version:
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for gauge in per_test:
            for test in report.tests:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels, test.name)

    def record_drift(self, report) -> None:  # type: ignore[no-untyped-def]
        """Set the drift and quality gauges from a ``DriftReport``."""
        labels = (report.model_name, str(report.model_version))
        self.drift_window.labels(*labels).set(report.window_size)
        self.drift_checked.labels(*labels).set_to_current_time()
        if report.verdict != "insufficient_data":
            self.drift_detected.labels(*labels).set(1 if report.verdict == "drift" else 0)
        for test in report.tests:
            self.drift_statistic.labels(*labels, test.name).set(test.statistic)
            self.drift_test_failed.labels(*labels, test.name).set(1 if test.drifted else 0)
            if test.p_value is not None:
                self.drift_p_value.labels(*labels, test.name).set(test.p_value)
        q = report.quality
        for gauge, value in (
            (self.estimated_accuracy, q.estimated_accuracy),
            (self.reference_accuracy, q.reference_accuracy),
            (self.realized_accuracy, q.realized_accuracy),
            (self.window_needs_review, q.needs_review_rate),
            (self.window_confidence, q.mean_confidence),
            (self.reviewed, q.reviewed),
        ):
            if value is not None:
                gauge.labels(*labels).set(value)
