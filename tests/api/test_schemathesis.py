"""Property-based tests of the served OpenAPI schema with schemathesis, against a real server
with the escrow vault deployed: no input a client can send produces a 5xx, and every error is a
problem document.

Each role's key (admin, operator, partner, auditor, regulator) and no key at all exercise every
operation, each on its own server (an admin's run may revoke or rotate keys it finds); then a
stateful run follows the links schemathesis infers between operations (a record posted, then
read, proved and bundled; a key created, then rotated and revoked; ...). The example counts are
small in `make test` and 20 times larger under `make fuzz` (FUZZ=long, tests/fuzz/budget.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.schemas import OpenApiSchema

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from tests.api.conftest import issue_keys, make_settings
from tests.fuzz.budget import LONG, LONG_FACTOR

ROLES = ("admin", "operator", "partner", "auditor", "regulator", None)
EXAMPLES_PER_OPERATION = {"admin": 20}
"""Per role; the others get :data:`OTHER_EXAMPLES` (most of their requests end in 401/403)."""
OTHER_EXAMPLES = 8
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8


SCHEMATHESIS_LONG_FACTOR = LONG_FACTOR // 5
"""Under `make fuzz` (each request is a real HTTP round trip, so a smaller factor)."""


def scaled(examples: int) -> int:
    return examples * SCHEMATHESIS_LONG_FACTOR if LONG else examples


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    schema: OpenApiSchema
    statuses: list[int] = field(default_factory=list)

    def headers(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}


@pytest.fixture
def served(tmp_path: Path, anvil: Devnet) -> Iterator[Served]:
    """A server with the escrow vault deployed, keys of every role, a record already in it."""
    api_settings = make_settings(
        tmp_path, anvil, escrow=True, rate_limit_per_second=100_000, rate_limit_burst=100_000
    )
    tokens, _, _ = issue_keys(api_settings, anvil)
    with ServerThread(api_settings, free_port()) as server:
        seeded = httpx.post(
            f"{server.url}/v1/records",
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            json={
                "id": "po-1",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "buyer:acme",
                "payload": {"amount": 125000, "currency": "USD"},
            },
            timeout=30,
        )
        assert seeded.status_code in (200, 201), seeded.text
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield Served(server.url, tokens, schema)


def check_response(response: Any, case: schemathesis.Case) -> None:
    """No 5xx, and every 4xx is an RFC 9457 problem document."""
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        content_type = str(response.headers.get("content-type", ""))
        assert "application/problem+json" in content_type, (case.method, case.path, response.text)


def engines_and_roles(roles: tuple[str | None, ...]) -> pytest.MarkDecorator:
    """Every role on SQLite, the admin (who reaches every operation) alone on PostgreSQL:
    the engine is below the routes, and each role's run costs seconds (``make test``'s
    budget)."""
    cases = [("sqlite", role) for role in roles] + [("postgresql", "admin")]
    return pytest.mark.parametrize(
        ("engine", "role"),
        cases,
        ids=[f"{engine}-{role or 'no-key'}" for engine, role in cases],
        indirect=["engine"],
    )


@pytest.mark.one_engine("the engines are parametrised with the roles: admin alone on PostgreSQL")
@engines_and_roles(ROLES)
def test_no_input_causes_a_server_error(served: Served, role: str | None) -> None:
    examples = scaled(EXAMPLES_PER_OPERATION.get(role or "", OTHER_EXAMPLES))
    headers = served.headers(role)
    failures: dict[str, str] = {}
    tested: list[str] = []
    for result in served.schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        tested.append(label)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(base_url=served.url, headers=headers)
            served.statuses.append(response.status_code)
            check_response(response, case)

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[label] = f"{type(exc).__name__}: {str(exc)[:800]}"
    assert "POST /v1/records/batch" in tested and "GET /v1/records" in tested
    assert "GET /v1/deals" in tested and "POST /v1/approvals" in tested
    assert len(served.statuses) >= 3 * len(tested)  # every operation was really exercised
    if role == "admin":
        assert any(200 <= status < 300 for status in served.statuses)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


@pytest.mark.one_engine("the engines are parametrised with the roles: admin alone on PostgreSQL")
@engines_and_roles(("admin", "operator", "partner"))
def test_linked_operations_cause_no_server_error(served: Served, role: str) -> None:
    """Stateful: sequences of calls that feed one response into the next request."""
    machine = served.schema.as_state_machine()
    assert served.schema.statistic.transitions.total > 0, "no links were inferred"
    headers = served.headers(role)
    statuses = served.statuses
    failed: list[BaseException] = []

    class Linked(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": served.url, "headers": headers}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            statuses.append(response.status_code)
            try:
                check_response(response, case)
            except BaseException as exc:
                failed.append(exc)
                raise

    # The server's state grows with every call, so a link that was usable in one scenario may
    # not be in the next: Hypothesis then stops with FlakyStrategyDefinition ("a flaky
    # precondition") although no response was wrong. That, and only that, is run again; any
    # failed check is reported as itself.
    for _attempt in range(3):
        try:
            Linked.run(
                settings=settings(
                    max_examples=scaled(STATEFUL_SCENARIOS),
                    stateful_step_count=STATEFUL_STEPS,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
            )
            break
        except FlakyStrategyDefinition:
            if failed:
                raise failed[0] from None
    else:
        pytest.fail("three runs in a row stopped on FlakyStrategyDefinition")
    assert not failed, failed
    assert len(statuses) >= STATEFUL_SCENARIOS
    if role != "partner":  # a partner may write little; the others' links must get somewhere
        assert any(200 <= status < 300 for status in statuses), statuses
