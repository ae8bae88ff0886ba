"""Prometheus series with TF Serving's names, served at ``/monitoring/prometheus/metrics``.

Names and labels are TF Serving's (``:tensorflow:serving:request_count`` and so on; see
``reference/tf-serving.md`` §3.4) so dashboards built for TF Serving work unchanged. The text is
written the way TF Serving's exporter writes it: ``# TYPE`` lines, counters without a ``_total``
suffix, no ``_created`` series. Two series are ours (``:imgclf:serving:...``): the batch sizes the
model actually ran and the depth of each batching queue.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; charset=utf-8"


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    return [start * factor**index for index in range(count)]


LATENCY_BUCKETS_US = exponential_buckets(10, 1.8, 33)  # TF Serving's request and runtime latency
QUEUING_BUCKETS_US = exponential_buckets(100, 1.2, 52)  # batching_session queuing latency
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


class ServingMetrics:
    """All of the model server's series, in their own registry (one per server)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_count = Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ["model_name", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_US,
            registry=r,
        )
        self.runtime_latency = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            buckets=LATENCY_BUCKETS_US,
            registry=r,
        )
        self.queuing_latency = Histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["thread_pool_name"],
            buckets=QUEUING_BUCKETS_US,
            registry=r,
        )
        self.wrapped_run_count = Counter(
            ":tensorflow:serving:batching_session:wrapped_run_count",
            "Counts the number of times a session run was wrapped by the batching session.",
            registry=r,
        )
        self.warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
            buckets=LATENCY_BUCKETS_US,
            registry=r,
        )
        self.load_attempt_count = Counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ["model_path", "status"],
            registry=r,
        )
        self.load_latency = Counter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"],
            registry=r,
        )
        self.failed_versions = Gauge(
            ":imgclf:serving:failed_versions",
            "Versions on disk that failed to load (END with an error); retried when their files change.",
            ["model_name"],
            registry=r,
        )
        self.batch_size = Histogram(
            ":imgclf:serving:batch_size",
            "Rows per model call made by the batching scheduler (after padding).",
            ["model_name"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            ":imgclf:serving:batch_queue_depth",
            "Tasks waiting in a batching queue.",
            ["model_name"],
            registry=r,
        )

    def exposition(self) -> bytes:
        return tf_serving_text(self.registry)


def tf_serving_text(registry: CollectorRegistry) -> bytes:
    """The registry in TF Serving's Prometheus text style (``util/prometheus_exporter.cc``)."""
    lines: list[str] = []
    for family in registry.collect():
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            name = family.name if family.type == "counter" else sample.name
            labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sample.labels.items())
            lines.append(f"{name}{{{labels}}} {floatToGoString(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
