"""The translation of pydantic's validation errors into the API's words
(:mod:`chainaudit.api.validation`), on the request models themselves."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from chainaudit.api.routes.deals import MilestoneIn
from chainaudit.api.routes.records import BatchIn, RecordIn
from chainaudit.api.validation import explain, model_shape


def explained(model: type[BaseModel], body: Any) -> list[dict[str, Any]]:
    """What the API says about ``body`` sent to a route taking ``model``."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    return explain(errors, model)


def test_pointers_follow_rfc_6901_into_the_body() -> None:
    body = {
        "records": [
            {
                "id": "a",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "x",
                "payload": {},
            },
            {"id": "b/c"},
        ]
    }
    pointers = [e["pointer"] for e in explained(BatchIn, body)]
    assert pointers == [
        "/records/1/id",
        "/records/1/kind",
        "/records/1/timestamp",
        "/records/1/actor",
        "/records/1/payload",
    ]


def test_messages_name_the_format_not_the_validator() -> None:
    said = {
        e["pointer"]: e["message"]
        for e in explained(
            RecordIn,
            {
                "id": "po-1",
                "kind": "transaction",
                "timestamp": "2026",
                "actor": "x",
                "payload": 5,
                "signer": "0x12",
            },
        )
    }
    assert said == {
        "/timestamp": "timestamp must be RFC 3339 with a time zone, e.g. 2026-11-21T09:30:00Z",
        "/payload": 'payload must be a JSON object, e.g. {"amount": 125000, "currency": "USD"}',
        "/signer": "signer must be an Ethereum address: 0x followed by 40 hex digits",
    }
    for message in said.values():
        assert "should" not in message and "Input" not in message


def test_a_model_without_hints_gets_words_for_its_patterns_and_bounds() -> None:
    said = {
        e["pointer"]: e["message"]
        for e in explained(MilestoneIn, {"amount": 0, "due_date": 1, "document_hash": "0x1"})
    }
    assert said["/document_hash"] == "document_hash must be 0x followed by 64 hex digits (32 bytes)"
    assert said["/amount"].startswith("amount must be greater than 0")


def test_the_body_shape_is_said_for_a_body_of_the_wrong_shape() -> None:
    (error,) = explained(BatchIn, [1, 2])
    assert error["pointer"] == ""
    assert error["message"] == "the body must be " + model_shape(BatchIn)
    assert '{"records": [record, ...]}' in error["message"]


def test_query_parameters_point_at_their_name() -> None:
    error = {"type": "less_than_equal", "loc": ("query", "limit"), "msg": "x", "ctx": {"le": 1000}}
    assert explain([error], None) == [
        {"in": "query", "pointer": "/limit", "message": "limit must be at most 1000"}
    ]
