"""Fuzz the gateway's HTTP surface from its own OpenAPI document (schemathesis, valid and invalid
cases, bounded): whatever arrives, the answer is never a 5xx and errors are OpenAI-shaped."""

from __future__ import annotations

import pytest
import schemathesis
from gateway_processes import RunningGateway
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow  # real gateway processes; each module well under 2 minutes


@pytest.fixture(scope="module")
def fuzzed_gateway(start_gateway, upstream: str) -> RunningGateway:
    return start_gateway(upstream, "--max-body-bytes", "65536")


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_no_input_makes_the_gateway_fail(
    fuzzed_gateway: RunningGateway, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(fuzzed_gateway.url + "/openapi.json")
    auth = {"Authorization": f"Bearer {fuzzed_gateway.key('enterprise')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    seen: list[int] = []
    for operation in operations:
        if mode == schemathesis.GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # no parameters and no body: nothing can be made invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=auth, timeout=10)
            seen.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            )
            if response.status_code >= 400:
                assert {"message", "type", "param", "code"} <= set(response.json()["error"])

        check()
    assert len(seen) >= 4
