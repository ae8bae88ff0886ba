"""What the gateway shows without a key (issue 17): /healthz and /readyz stay open (probes need them)
but say nothing about connections; /metrics and the API docs can require a key
(``IMGCLF_METRICS_REQUIRE_KEY``, ``IMGCLF_DOCS_REQUIRE_KEY``): a ``metrics`` key for Prometheus,
any key for the docs, ``admin`` for both."""

from __future__ import annotations

from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import assert_error, bearer


def test_open_by_default_without_connection_details(cats_dogs_registry, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert gw.client.get(path).status_code == 200, path
        assert "sqlite" not in gw.client.get("/readyz").text and str(tmp_path) not in gw.client.get("/readyz").text


def test_metrics_and_docs_can_require_a_key(cats_dogs_registry, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                metrics_require_key=True, docs_require_key=True)  # fmt: skip
    with running_gateway(settings) as gw:
        assert gw.client.get("/healthz").status_code == 200 and gw.client.get("/readyz").status_code == 200
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert_error(gw.client.get(path), 401, "unauthorized")
        predict, metrics, admin = gw.key("predict"), gw.key("metrics"), gw.key("admin")
        assert_error(gw.client.get("/metrics", headers=bearer(predict)), 403, "forbidden")
        for key in (metrics, admin):
            response = gw.client.get("/metrics", headers=bearer(key))
            assert response.status_code == 200 and "imgclf_gateway_requests_total" in response.text
        spec = gw.client.get("/openapi.json", headers=bearer(predict))
        assert spec.status_code == 200 and "/v1/predict" in spec.json()["paths"]
        assert gw.client.get("/docs", headers={"X-API-Key": predict}).status_code == 200
