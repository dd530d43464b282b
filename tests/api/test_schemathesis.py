"""Property-based tests of the served OpenAPI schema with schemathesis: no input a client can
send produces a 5xx, and every error is a problem document. A bounded number of examples per
operation keeps the run short."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from chainaudit.api.server import ServerThread
from chainaudit.devnet import Devnet, free_port
from tests.api.conftest import issue_keys, make_settings

EXAMPLES_PER_OPERATION = 30


def test_no_input_causes_a_server_error(tmp_path: Path, anvil: Devnet) -> None:
    devnet = anvil
    _exercise_every_operation(tmp_path, devnet)


def _exercise_every_operation(tmp_path: Path, anvil: Devnet) -> None:
    api_settings = make_settings(
        tmp_path, anvil, escrow=True, rate_limit_per_second=100_000, rate_limit_burst=100_000
    )
    tokens, _, _ = issue_keys(api_settings, anvil)
    with ServerThread(api_settings, free_port()) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        headers = {"Authorization": f"Bearer {tokens['admin']}"}
        failures: dict[str, str] = {}
        tested: list[str] = []
        calls: list[int] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            tested.append(label)

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def exercise(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, headers=headers)
                calls.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])
                if response.status_code >= 400:
                    content_type = response.headers.get("content-type", "")
                    assert "application/problem+json" in str(content_type), response.text

            try:
                exercise()
            except Exception as exc:  # collect every operation's failure, then report them all
                failures[label] = f"{type(exc).__name__}: {str(exc)[:800]}"
        assert "POST /v1/records/batch" in tested and "GET /v1/records" in tested
        assert len(calls) >= 5 * len(tested)  # every operation was really exercised
        assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
