"""Errors tell the integrator what to send (issue 14): every 4xx is an RFC 9457 problem with
an ``instance``, validation errors carry ``{in, pointer, message}`` in the API's words,
duplicate keys are refused, query parameters are validated, ids with ``/`` are refused for
new records and readable when a log holds them, and every documented limit answers with its
documented status. All against a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainaudit.api.server import ServerThread
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core.records import MAX_RECORD_BYTES, prepare
from tests.api.conftest import Api, issue_keys, make_settings, open_log

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


def record(i: int, **change: Any) -> dict[str, Any]:
    return {
        "id": f"err-{i}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "buyer:acme",
        "payload": {"amount": i, "currency": "USD"},
        **change,
    }


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The RFC 9457 problem of ``response``, checked for every member the issue requires."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"] == "https://chainaudit.dev/problems/" + slug, body
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path, body
    return body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert len(body["errors"]) == 1, body["errors"]
    error: dict[str, Any] = body["errors"][0]
    return error


def test_validation_speaks_the_api_not_pydantic(api: Api) -> None:
    with api.client("operator") as client:
        # no content type (curl -d sends a form type): say which one to send
        sent = json.dumps(record(1)).encode()
        body = problem(client.post("/v1/records", content=sent), 415, "unsupported-media-type")
        assert "Content-Type: application/json" in only_error(body)["message"]
        form = {"content-type": "application/x-www-form-urlencoded"}
        body = problem(
            client.post("/v1/records", content=sent, headers=form), 415, "unsupported-media-type"
        )
        assert "application/x-www-form-urlencoded" in body["detail"]

        # a JSON syntax error: the byte offset, line and column
        broken = b'{"id": "err-1", "kind": "transaction",, "actor": "x"}'
        body = problem(
            client.post("/v1/records", content=broken, headers=JSON), 422, "invalid-json"
        )
        error = only_error(body)
        assert error["offset"] == broken.index(b",,") + 1 and error["line"] == 1
        assert f"at byte {error['offset']}" in error["message"]
        assert "decode" not in body["detail"].lower()

        # the timestamp format, with an example, at its pointer
        body = problem(
            client.post("/v1/records", json=record(1, timestamp="2026-11-21")), 422, "validation"
        )
        error = only_error(body)
        assert error == {
            "in": "body",
            "pointer": "/timestamp",
            "message": "timestamp must be RFC 3339 with a time zone, e.g. 2026-11-21T09:30:00Z",
        }
        assert "String should" not in body["detail"]

        # a batch: pointers into the records list
        bad = [record(1), record(2, timestamp="yesterday"), record(3, kind=7)]
        body = problem(client.post("/v1/records/batch", json={"records": bad}), 422, "validation")
        pointers = {e["pointer"] for e in body["errors"]}
        assert pointers == {"/records/1/timestamp", "/records/2/kind"}

        # the batch body shape
        for wrong in ([record(1)], record(1)):
            body = problem(client.post("/v1/records/batch", json=wrong), 422, "validation")
            assert any('{"records": [record, ...]}' in e["message"] for e in body["errors"])
        body = problem(client.post("/v1/records", json={"records": [record(1)]}), 422, "validation")
        assert any("/v1/records/batch" in e["message"] for e in body["errors"])

        # the whole body missing, an unknown field, a missing field
        body = problem(client.post("/v1/records", headers=JSON), 422, "validation")
        assert "the body is missing" in only_error(body)["message"]
        body = problem(
            client.post("/v1/records", json={**record(1), "amount": 5}), 422, "validation"
        )
        assert only_error(body)["pointer"] == "/amount"
        assert 'unknown field "amount"' in only_error(body)["message"]
        missing = record(1)
        del missing["actor"]
        body = problem(client.post("/v1/records", json=missing), 422, "validation")
        assert only_error(body) == {
            "in": "body",
            "pointer": "/actor",
            "message": "actor is required: 1-256 printable characters, e.g. buyer:acme",
        }

        # an error found after parsing (the record's own rules) points at its record
        body = problem(
            client.post(
                "/v1/records/batch", json={"records": [record(1), record(2, payload={"x": 1.5})]}
            ),
            422,
            "invalid-record",
        )
        assert only_error(body)["pointer"] == "/records/1"

        # query parameters: in the query, pointer named after the parameter
        body = problem(client.get("/v1/records", params={"limit": 0}), 422, "validation")
        assert only_error(body) == {
            "in": "query",
            "pointer": "/limit",
            "message": "limit must be at least 1",
        }


def test_duplicate_keys_are_refused_for_every_body(api: Api) -> None:
    with api.client("operator") as client:
        twice = (
            b'{"id": "err-dup", "kind": "transaction", "timestamp": "2026-11-21T09:30:00Z",'
            b' "actor": "buyer:acme", "payload": {"amount": 1, "amount": 2}}'
        )
        body = problem(
            client.post("/v1/records", content=twice, headers=JSON), 422, "duplicate-key"
        )
        assert only_error(body)["pointer"] == "/payload/amount"
        assert "'amount'" in body["detail"]
        problem(client.get("/v1/records/err-dup"), 404, "not-found")  # nothing was stored
        batch = b'{"records": [], "records": [' + json.dumps(record(1)).encode() + b"]}"
        body = problem(
            client.post("/v1/records/batch", content=batch, headers=JSON), 422, "duplicate-key"
        )
        assert only_error(body)["pointer"] == "/records"
        for path in ("/v1/verify", "/v1/keys", "/v1/deals"):
            body = problem(
                client.post(path, content=b'{"a": 1, "b": {"c": 1, "c": 1}}', headers=JSON),
                422,
                "duplicate-key",
            )
            assert only_error(body)["pointer"] == "/b/c"


def test_query_parameters_say_why_they_are_refused(api: Api) -> None:
    with api.client("auditor") as client:
        body = problem(client.get("/v1/records", params={"kind": "nope"}), 422, "validation")
        error = only_error(body)
        assert error["pointer"] == "/kind" and error["in"] == "query"
        assert "transaction" in error["message"] and "document" in error["message"]
        body = problem(
            client.get(
                "/v1/records",
                params={"since": "2026-11-22T00:00:00Z", "until": "2026-11-21T00:00:00Z"},
            ),
            422,
            "validation",
        )
        assert "is after until" in only_error(body)["message"]
        body = problem(client.get("/v1/records", params={"since": "monday"}), 422, "validation")
        assert "e.g. 2026-11-21T09:30:00Z" in only_error(body)["message"]
        ok = client.get(
            "/v1/records", params={"kind": "transaction", "since": "2026-11-21T00:00:00Z"}
        )
        assert ok.status_code == 200, ok.text
    with api.client("operator") as operator:
        made = operator.post("/v1/records/batch", json={"records": [record(i) for i in range(12)]})
        assert made.status_code == 201, made.text
    with api.client("auditor") as client:
        body = problem(
            client.get("/v1/consistency", params={"from_size": 12, "to_size": 10}),
            422,
            "validation",
        )
        assert only_error(body)["pointer"] == "/from_size"
        assert "larger than to_size" in body["detail"]
        assert (
            client.get("/v1/consistency", params={"from_size": 10, "to_size": 12}).status_code
            == 200
        )


def test_ids_with_a_slash_are_refused_at_write_and_readable_when_present(api: Api) -> None:
    with api.client("operator") as client:
        body = problem(client.post("/v1/records", json=record(1, id="a/b")), 422, "validation")
        error = only_error(body)
        assert error["pointer"] == "/id" and 'no "/"' in error["message"]
        body = problem(
            client.post("/v1/records/batch", json={"records": [record(2), record(3, id="x/y")]}),
            422,
            "validation",
        )
        assert only_error(body)["pointer"] == "/records/1/id"
    # a log may already hold such ids (chainaudit ingest, older versions): they stay readable
    with open_log(api.settings) as log:
        log.append([prepare(record(4, id="lot/7")), prepare(record(5, id="lot/7/proof"))])
    with api.client("auditor") as client:
        for path in ("lot/7", "lot%2F7", "lot%2f7"):
            found = client.get(httpx.URL(f"{api.url}/v1/records/{path}"))
            assert found.status_code == 200, (path, found.text)
            assert found.json()["record_id"] == "lot/7"
            proof = client.get(httpx.URL(f"{api.url}/v1/records/{path}/proof"))  # the fast lane
            assert proof.status_code == 200 and proof.json()["record_id"] == "lot/7", proof.text
            routed = client.get(httpx.URL(f"{api.url}/v1/records/{path}/proof?tree_size=2"))
            assert routed.status_code == 200 and routed.json()["record_id"] == "lot/7", routed.text
            bundle = client.get(httpx.URL(f"{api.url}/v1/records/{path}/bundle"))
            problem(bundle, 409, "proof-pending")  # found, not yet anchored
        # documented: the proof route wins for an id whose last segment is "proof"
        shadowed = client.get("/v1/records/lot/7/proof")
        assert shadowed.json()["record_id"] == "lot/7"
        problem(client.get("/v1/records/lot/8"), 404, "not-found")


def test_every_problem_names_its_instance(tmp_path: Path, anvil: Devnet) -> None:
    settings = make_settings(tmp_path, anvil, rate_limit_per_second=0.01, rate_limit_burst=3)
    tokens, _, _ = issue_keys(settings, anvil)
    with ServerThread(settings, free_port(), run_anchorer=False) as server:
        with httpx.Client(base_url=server.url) as anonymous:
            problem(anonymous.get("/v1/records"), 401, "unauthenticated")
            problem(anonymous.get("/v1/nowhere"), 404, "not-found")
            problem(anonymous.delete("/healthz"), 405, "method-not-allowed")
            huge = b"[" + b" " * (settings.max_body_bytes + 1) + b"]"
            problem(
                anonymous.post("/v1/records", content=huge, headers=JSON), 413, "payload-too-large"
            )
        with httpx.Client(base_url=server.url, headers={"X-API-Key": tokens["auditor"]}) as auditor:
            for _ in range(3):
                problem(auditor.get("/v1/records/nope"), 404, "not-found")
            problem(auditor.get("/v1/records/nope"), 429, "rate-limited")


LIMITS = [  # the README's table: (limit, the documented status, problem type)
    ("record size", 422, "invalid-record"),
    ("body size", 413, "payload-too-large"),
    ("batch size", 413, "too-many-records"),
    ("page size", 422, "validation"),
    ("nesting", 422, "nesting-too-deep"),
]


@pytest.fixture(scope="module")
def readme_limits() -> dict[str, tuple[int, str]]:
    """The limits table of the README: limit name → (status, problem type)."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    table = text.split("<!-- limits -->")[1]
    found = {}
    for line in table.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].isdigit():
            found[cells[0]] = (int(cells[2]), cells[3])
    return found


def test_the_readme_documents_every_limit(readme_limits: dict[str, tuple[int, str]]) -> None:
    assert readme_limits == {name: (status, slug) for name, status, slug in LIMITS}


def test_each_limit_answers_with_its_documented_status(
    api: Api, readme_limits: dict[str, tuple[int, str]]
) -> None:
    over = {
        "record size": (
            "/v1/records",
            record(1, payload={"text": "x" * MAX_RECORD_BYTES}),
            "/v1/records",
        ),
        "body size": ("/v1/records/batch", None, "/v1/records/batch"),
        "batch size": (
            "/v1/records/batch",
            {"records": [record(i) for i in range(api.settings.max_records_per_request + 1)]},
            "/v1/records/batch",
        ),
    }
    with api.client("operator") as client:
        for name, (status, slug) in readme_limits.items():
            if name == "record size":
                response = client.post("/v1/records", json=over[name][1])
                assert "the limit is 65536" in response.text
            elif name == "body size":
                huge = b'{"records": [' + b" " * api.settings.max_body_bytes + b"]}"
                response = client.post("/v1/records/batch", content=huge, headers=JSON)
            elif name == "batch size":
                response = client.post("/v1/records/batch", json=over[name][1])
            elif name == "page size":
                response = client.get("/v1/records", params={"limit": 1001})
                assert client.get("/v1/records", params={"limit": 1000}).status_code == 200
            else:
                deep = b"[" * 65 + b"]" * 65
                response = client.post("/v1/records", content=deep, headers=JSON)
            problem(response, status, slug)
