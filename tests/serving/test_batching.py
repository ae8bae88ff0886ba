"""Dynamic batching: merging, limits, padding, isolation of bad requests, and the server's metrics."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import numpy as np
import pytest

from imgclf.errors import ServingError
from imgclf.serving.batching import BatchScheduler
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import BatchingParameters, parse_batching_parameters
from tests.serving.conftest import running_server


class SlowDouble:
    """A model call that takes a while, so requests pile up behind it; records the batch sizes it saw."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.sizes: list[int] = []

    def __call__(self, inputs):  # type: ignore[no-untyped-def]
        x = inputs["x"]
        if np.isnan(x).any():
            raise ServingError("INVALID_ARGUMENT", "NaN in input")
        self.sizes.append(len(x))
        time.sleep(self.seconds)
        return {"y": x * 2}


def scheduler(**params) -> BatchScheduler:  # type: ignore[no-untyped-def]
    return BatchScheduler(BatchingParameters(**{"num_batch_threads": 1, **params}), ServingMetrics())


def test_concurrent_requests_are_merged_and_each_gets_its_rows():
    model = SlowDouble()
    batcher = scheduler(max_batch_size=16, max_enqueued_batches=100)
    try:
        futures = [batcher.submit("m", model, {"x": np.array([i, i + 0.5])}) for i in range(20)]
        results = [f.result(timeout=10)["y"].tolist() for f in futures]
    finally:
        batcher.stop()
    assert results == [[2 * i, 2 * i + 1] for i in range(20)]
    assert max(model.sizes) > 2  # requests shared model calls
    assert sum(model.sizes) == 40
    assert all(size <= 16 for size in model.sizes)


def test_timeout_waits_for_a_fuller_batch():
    model = SlowDouble(seconds=0)
    batcher = scheduler(max_batch_size=8, batch_timeout_micros=200_000)
    try:
        futures = []
        for i in range(4):
            futures.append(batcher.submit("m", model, {"x": np.array([float(i)])}))
            time.sleep(0.01)
        for future in futures:
            future.result(timeout=10)
    finally:
        batcher.stop()
    assert model.sizes == [4]


def test_limits_follow_tf_serving():
    model = SlowDouble(seconds=0.3)
    batcher = scheduler(max_batch_size=2, max_enqueued_batches=1)
    try:
        with pytest.raises(ServingError) as too_big:
            batcher.submit("m", model, {"x": np.zeros(3)})
        assert too_big.value.code == "INVALID_ARGUMENT"
        assert too_big.value.message == "Task size 3 is larger than maximum input batch size 2"
        first = batcher.submit("m", model, {"x": np.zeros(2)})  # taken by the thread
        time.sleep(0.05)
        queued = batcher.submit("m", model, {"x": np.zeros(2)})  # fills the one queued batch
        with pytest.raises(ServingError) as full:
            batcher.submit("m", model, {"x": np.zeros(1)})
        assert full.value.code == "UNAVAILABLE"
        assert full.value.message == "The batch scheduling queue to which this task was submitted is full"
        first.result(timeout=10)
        queued.result(timeout=10)
    finally:
        batcher.stop()


def test_padding_to_allowed_batch_sizes():
    model = SlowDouble(seconds=0)
    batcher = scheduler(max_batch_size=8, allowed_batch_sizes=(4, 8))
    try:
        result = batcher.submit("m", model, {"x": np.array([1.0, 2.0, 3.0])}).result(timeout=10)
    finally:
        batcher.stop()
    assert model.sizes == [4]
    assert result["y"].tolist() == [2.0, 4.0, 6.0]  # the padding row is not returned


def test_a_bad_request_fails_alone_not_with_its_batch():
    model = SlowDouble(seconds=0.1)
    batcher = scheduler(max_batch_size=8)
    try:
        blocker = batcher.submit("m", model, {"x": np.array([0.0])})
        time.sleep(0.02)
        good = batcher.submit("m", model, {"x": np.array([1.0])})
        bad = batcher.submit("m", model, {"x": np.array([np.nan])})
        blocker.result(timeout=10)
        assert good.result(timeout=10)["y"].tolist() == [2.0]
        with pytest.raises(ServingError, match="NaN"):
            bad.result(timeout=10)
    finally:
        batcher.stop()


def test_batching_parameters_file_parses_tf_serving_text():
    params = parse_batching_parameters(
        "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\nmax_enqueued_batches { value: 5 }\n"
        "num_batch_threads { value: 3 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 32\n"
    )
    assert params == BatchingParameters(
        max_batch_size=32,
        batch_timeout_micros=1000,
        max_enqueued_batches=5,
        num_batch_threads=3,
        allowed_batch_sizes=(8, 32),
    )
    from imgclf.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        parse_batching_parameters("max_batch_size { value: 32 }\nallowed_batch_sizes: 8")
    with pytest.raises(ConfigError, match="no_such_field"):
        parse_batching_parameters("no_such_field { value: 1 }")


def test_server_batches_concurrent_requests_and_reports_it(tmp_path, toy_model_v1):
    base = tmp_path / "toy"
    base.mkdir()
    shutil.copytree(toy_model_v1, base / "1")
    params = BatchingParameters(max_batch_size=64, batch_timeout_micros=20_000, num_batch_threads=1)
    with running_server(
        model_name="toy", model_base_path=base, enable_batching=True, batching_parameters=params
    ) as running:
        errors: list[str] = []

        def client(index: int) -> None:
            with httpx.Client(base_url=running.url, timeout=30) as http:
                for _ in range(10):
                    response = http.post("/v1/models/toy:predict", json={"instances": [float(index)]})
                    if response.json() != {"predictions": [0.5 * index + 2]}:
                        errors.append(response.text)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        calls = running.metric(":imgclf:serving:batch_size_count", model_name="toy")
        rows = running.metric(":imgclf:serving:batch_size_sum", model_name="toy")
        assert rows == 160
        assert calls < 160 and rows / calls > 1  # the model saw batches larger than 1
        assert running.metric(":tensorflow:serving:batching_session:queuing_latency_count") == 160
        too_big = running.rest.post("/v1/models/toy:predict", json={"instances": [0.0] * 65})
        assert too_big.status_code == 400
        assert too_big.json() == {"error": "Task size 65 is larger than maximum input batch size 64"}


def test_queues_of_unloaded_versions_are_dropped_once_drained():
    model = SlowDouble(seconds=0.2)
    batcher = scheduler(max_batch_size=4)
    try:
        running = batcher.submit(("m", 1), model, {"x": np.array([1.0])})
        time.sleep(0.05)
        queued = batcher.submit(("m", 1), model, {"x": np.array([2.0])})
        batcher.remove(lambda key: key == ("m", 1))  # version 1 unloaded while a request waits
        assert queued.result(timeout=10)["y"].tolist() == [4.0]  # the waiting request still runs
        running.result(timeout=10)
        assert batcher._queues == {}  # and nothing keeps the version alive afterwards
    finally:
        batcher.stop()
