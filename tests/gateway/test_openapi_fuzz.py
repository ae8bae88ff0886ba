"""schemathesis generates requests from the gateway's OpenAPI spec: none may get a 5xx.

Requests carry an admin key, so generated bodies and parameters get past authentication and
reach validation, the database queries and the model.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.gateway.conftest import gateway_settings, running_gateway


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


def test_no_server_errors(api_schema, fuzzed_gateway, admin_key):  # type: ignore[no-untyped-def]
    # Driven by hypothesis directly: schemathesis' pytest plugin does not support pytest 9 yet.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_5xx(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                base_url=fuzzed_gateway.url,
                headers={"Authorization": f"Bearer {admin_key}"},
                checks=[not_a_server_error],
            )

        no_5xx()
