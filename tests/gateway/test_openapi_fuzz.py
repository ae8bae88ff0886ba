"""schemathesis generates requests from the gateway's OpenAPI spec and runs its checks on every
answer: no 5xx, only documented status codes, content types and headers, answers that match their
schemas, invalid data rejected, missing or invalid keys refused (issue 17: at least 5,000 requests).

Requests carry an admin key, so generated bodies and parameters get past authentication and
reach validation, the database queries and the model. One check is left out:
``positive_data_acceptance`` expects every schema-valid request to succeed, but bytes generated to
fit ``format: binary`` are not images and a generated cursor is not one the API gave out, so the
gateway rightly refuses them (415, 400).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.gateway.conftest import gateway_settings, running_gateway

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.ignored_auth,
    checks.use_after_free,
    checks.ensure_resource_availability,
]
REQUESTS = 5000


@pytest.fixture(scope="module")
def fuzzed_gateway(cats_dogs_registry, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fuzz")
    database = f"sqlite:///{tmp / 'db.sqlite'}"
    with running_gateway(gateway_settings(tmp, cats_dogs_registry, database, rate_limit_per_minute=1e6)) as gw:
        yield gw


@pytest.fixture(scope="module")
def admin_key(fuzzed_gateway) -> str:  # type: ignore[no-untyped-def]
    return fuzzed_gateway.key("admin", "schemathesis")


@pytest.fixture(scope="module")
def api_schema(fuzzed_gateway):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(fuzzed_gateway.url + "/openapi.json")


@pytest.mark.slow
def test_every_check_passes_on_generated_requests(api_schema, fuzzed_gateway, admin_key):  # type: ignore[no-untyped-def]
    # Driven by hypothesis directly: schemathesis' pytest plugin does not support pytest 9 yet.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    sent = [0]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=REQUESTS // 4,  # operations without parameters run out of new examples early
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case) -> None:  # type: ignore[no-untyped-def]
            sent[0] += 1
            case.call_and_validate(
                base_url=fuzzed_gateway.url, headers={"Authorization": f"Bearer {admin_key}"}, checks=CHECKS
            )

        conforms()
    assert sent[0] >= REQUESTS, sent[0]
    assert fuzzed_gateway.metric("imgclf_gateway_requests_total", status="500") == 0
