"""The three model backends give the same scores for the same images, and say which version answered."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from imgclf.errors import ServingError
from imgclf.export.inference import ExportedModel
from imgclf.gateway.backends import (
    GrpcBackend,
    LocalBackend,
    RestBackend,
    V2GrpcBackend,
    V2RestBackend,
    create_backend,
    read_model_card,
)
from imgclf.registry.publish import export_run
from tests.serving.conftest import running_server, wait_for


@pytest.fixture(scope="module")
def registry(shapes_run, tmp_path_factory):
    registry = tmp_path_factory.mktemp("gateway_registry")
    export_run(shapes_run.path, registry, "shapes")
    return registry


@pytest.fixture(scope="module")
def images(shapes_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted(shapes_dir.rglob("*.png"))[:3]]


def test_local_and_remote_backends_agree(registry, images):
    offline = ExportedModel.load(registry / "shapes").predict_bytes(images)
    expected = offline["scores"]
    local = LocalBackend(registry, "shapes")
    try:
        answer = local.classify(images)
        assert local.ready() and (answer.model_name, answer.model_version) == ("shapes", 1)
        np.testing.assert_allclose(answer.scores, expected, atol=1e-5)
        np.testing.assert_array_equal(answer.class_ids, offline["class_ids"])
        np.testing.assert_allclose(answer.statistics, offline["input_statistics"], rtol=1e-6)
        with pytest.raises(ServingError) as missing:
            local.classify(images, version=9)
        assert missing.value.code == "NOT_FOUND"
    finally:
        local.close()
    with running_server(model_name="shapes", model_base_path=registry / "shapes", enable_batching=True) as server:
        for backend in (
            GrpcBackend(f"127.0.0.1:{server.server.grpc_port}", "shapes"),
            RestBackend(server.url, "shapes"),
            V2GrpcBackend(f"127.0.0.1:{server.server.grpc_port}", "shapes"),
            V2RestBackend(server.url, "shapes"),
        ):
            try:
                answer = backend.classify(images)
                assert backend.ready() and answer.model_version == 1
                assert backend.is_available(1) and not backend.is_available(9)
                np.testing.assert_allclose(answer.scores, expected, atol=1e-5)
                np.testing.assert_array_equal(answer.class_ids, offline["class_ids"])
                np.testing.assert_allclose(answer.statistics, offline["input_statistics"], rtol=1e-6)
                np.testing.assert_allclose(answer.embeddings, offline["embedding_projection"], rtol=1e-4, atol=1e-6)
                with pytest.raises(ServingError) as missing:
                    backend.classify(images, version=9)
                assert missing.value.code == "NOT_FOUND"
            finally:
                backend.close()


@pytest.mark.parametrize("kind", [GrpcBackend, V2GrpcBackend])
def test_grpc_backend_spreads_requests_over_model_server_replicas(registry, images, kind):
    """One name resolving to several model servers (a headless Service): requests go round-robin."""

    def requests_served(server) -> float:  # type: ignore[no-untyped-def]
        text = server.rest.get("/monitoring/prometheus/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(":tensorflow:serving:request_count{")
        )

    with (
        running_server(model_name="shapes", model_base_path=registry / "shapes") as first,
        running_server(model_name="shapes", model_base_path=registry / "shapes") as second,
    ):
        target = f"ipv4:127.0.0.1:{first.server.grpc_port},127.0.0.1:{second.server.grpc_port}"
        backend = kind(target, "shapes")
        try:
            for _ in range(20):
                backend.classify(images[:1])
        finally:
            backend.close()
        served = requests_served(first), requests_served(second)
        assert sum(served) == 20 and min(served) >= 5, served


def test_remote_backends_see_versions_the_model_server_loads(registry, tmp_path):
    """The router asks the backend whether a version is loaded; remote backends ask the model server."""
    base = tmp_path / "shapes"
    shutil.copytree(registry / "shapes" / "1", base / "1")
    with running_server(model_name="shapes", model_base_path=base, file_system_poll_wait_seconds=0.2) as server:
        grpc_target = f"127.0.0.1:{server.server.grpc_port}"
        backends = (
            GrpcBackend(grpc_target, "shapes"),
            RestBackend(server.url, "shapes"),
            V2GrpcBackend(grpc_target, "shapes"),
            V2RestBackend(server.url, "shapes"),
        )
        try:
            for backend in backends:
                assert backend.is_available(1) and not backend.is_available(2)
            shutil.copytree(registry / "shapes" / "1", base / "2")  # the default policy serves the newest only
            for backend in backends:
                wait_for(lambda b=backend: b.is_available(2) and not b.is_available(1))
        finally:
            for backend in backends:
                backend.close()


def test_unreachable_model_server_is_unavailable_not_a_crash(registry, images):
    for backend in (
        GrpcBackend("127.0.0.1:1", "shapes", timeout=2),
        RestBackend("http://127.0.0.1:1", "shapes"),
        V2GrpcBackend("127.0.0.1:1", "shapes", timeout=2),
        V2RestBackend("http://127.0.0.1:1", "shapes"),
    ):
        assert not backend.ready() and not backend.is_available(1)
        with pytest.raises(ServingError) as caught:
            backend.classify(images)
        assert caught.value.code == "UNAVAILABLE"
        backend.close()


def test_model_card_and_backend_spec(registry, shapes_run):
    card = read_model_card(registry, "shapes", 1)
    assert card.classes == shapes_run.read_labels()
    assert card.threshold is None  # three classes: no binary threshold
    from imgclf.errors import ConfigError

    with pytest.raises(ConfigError, match="backend must be"):
        create_backend("ftp://x", registry, "shapes")
    for spec, kind in (
        ("grpc://127.0.0.1:1", GrpcBackend),
        ("http://127.0.0.1:1", RestBackend),
        ("v2+grpc://127.0.0.1:1", V2GrpcBackend),
        ("v2+http://127.0.0.1:1", V2RestBackend),
    ):
        backend = create_backend(spec, registry, "shapes")
        assert type(backend) is kind
        backend.close()


def test_v2_rest_backend_reads_json_answers_too():
    """A server that answers JSON although binary outputs were asked for (the extension is optional)."""
    import json

    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        length = int(request.headers["inference-header-content-length"])
        header = json.loads(request.content[:length])
        assert header["inputs"][0]["datatype"] == "BYTES" and request.url.path == "/v2/models/shapes/versions/3/infer"
        outputs = [
            {"name": "scores", "datatype": "FP32", "shape": [1, 3], "data": [0.25, 0.5, 0.25]},
            {"name": "class_ids", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "labels", "datatype": "BYTES", "shape": [1], "data": ["b"]},
        ]
        return httpx.Response(200, json={"model_name": "shapes", "model_version": "3", "outputs": outputs})

    backend = V2RestBackend("http://model-server", "shapes")
    backend._http = httpx.Client(base_url="http://model-server", transport=httpx.MockTransport(answer))
    try:
        result = backend.classify([b"image"], version=3)
    finally:
        backend.close()
    assert result.model_version == 3 and result.scores.dtype == np.float32 and result.class_ids.tolist() == [1]
    np.testing.assert_allclose(result.scores, [[0.25, 0.5, 0.25]])
