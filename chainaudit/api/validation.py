"""Validation errors in the API's own words.

FastAPI reports a request that does not fit a route's models with pydantic's messages ("Input
should be a valid dictionary or object to extract fields from", ``body.32``). This module
turns each of them into ``{"in", "pointer", "message"}``: ``in`` names the part of the request
(``body``, ``query``, ``path``, ``header``), ``pointer`` is an RFC 6901 JSON pointer into it
(``/records/3/timestamp`` in a body, ``/since`` for a query parameter) and ``message`` says
what to send, with the format and an example where a field has one.

A request model may describe itself for these messages with two class variables:
``shape`` (the whole body, e.g. ``{"records": [record, ...]}``) and ``hints`` (per field, the
expected format, e.g. ``"RFC 3339 with a time zone, e.g. 2026-11-21T09:30:00Z"``).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Sequence
from typing import Any, Final, Union

from pydantic import BaseModel

from chainaudit.core.jsonlimits import pointer_token

__all__ = ["PATTERNS", "explain", "model_shape"]

PATTERNS: Final = {
    r"^0x[0-9a-fA-F]{64}$": "0x followed by 64 hex digits (32 bytes)",
    r"^0x[0-9a-fA-F]{40}$": "an Ethereum address: 0x followed by 40 hex digits",
    r"^0x[0-9a-fA-F]{130}$": "0x followed by 130 hex digits (a 65-byte signature)",
    r"^[0-9a-f]{32}$": "32 lowercase hex digits",
}
"""The regular expressions of request fields, in words."""


def explain(errors: Sequence[Any], body_model: type[BaseModel] | None) -> list[dict[str, Any]]:
    """Translate pydantic's ``errors`` (of a request whose body model is ``body_model``)."""
    return [_explain(error, body_model) for error in errors]


def model_shape(model: type[BaseModel]) -> str:
    """How the body of ``model`` looks: its own ``shape`` or its required and optional
    fields."""
    shape = getattr(model, "shape", None)
    if isinstance(shape, str):
        return shape
    required = [n for n, f in model.model_fields.items() if f.is_required()]
    optional = [n for n, f in model.model_fields.items() if not f.is_required()]
    text = "a JSON object with " + (", ".join(f'"{n}"' for n in required) or "no required fields")
    if optional:
        text += " (optional: " + ", ".join(f'"{n}"' for n in optional) + ")"
    return text


def _explain(error: Any, body_model: type[BaseModel] | None) -> dict[str, Any]:
    loc = tuple(error.get("loc", ()))
    where = str(loc[0]) if loc else "body"
    path = loc[1:]
    pointer = "".join("/" + pointer_token(part) for part in path)
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if where == "body":
        owner, name = _owner(body_model, path)
        message = _body_message(kind, ctx, error, body_model, owner, name, path)
    else:
        name = str(path[-1]) if path else where
        message = _value_message(kind, ctx, error, name, None)
    return {"in": where, "pointer": pointer, "message": message}


def _body_message(
    kind: str,
    ctx: dict[str, Any],
    error: Any,
    body_model: type[BaseModel] | None,
    owner: type[BaseModel] | None,
    name: str | None,
    path: tuple[Any, ...],
) -> str:
    if not path:  # the body as a whole
        shape = model_shape(body_model) if body_model is not None else "a JSON object"
        if kind == "missing":
            return f"the body is missing; send {shape} with `Content-Type: application/json`"
        if kind == "json_invalid":
            return f"the body is not valid JSON ({ctx.get('error', error.get('msg'))})"
        return f"the body must be {shape}"
    label = name if name is not None else str(path[-1])
    if kind == "extra_forbidden":
        allowed = ", ".join(f'"{n}"' for n in owner.model_fields) if owner is not None else ""
        text = f'unknown field "{label}"'
        if allowed:
            text += f"; this object takes {allowed}"
        if owner is not None and label == "records" and "records" not in owner.model_fields:
            text += '; to append several records, POST {"records": [...]} to /v1/records/batch'
        return text
    hint = None
    if owner is not None and name is not None:
        hints = getattr(owner, "hints", None)
        if isinstance(hints, dict):
            hint = hints.get(name)
    if kind in ("model_type", "model_attributes_type", "dict_type") and owner is not None:
        target = _field_model(owner, name)
        if target is not None:
            return f"{label} must be {model_shape(target)}"
    message = _value_message(kind, ctx, error, label, hint)
    example = _example(owner, name) if hint is None else None
    return f"{message} (e.g. {example})" if example is not None else message


def _example(owner: type[BaseModel] | None, name: str | None) -> str | None:
    """The first documented example of the field ``name`` of ``owner``, as JSON."""
    field = owner.model_fields.get(name or "") if owner is not None else None
    if field is None or not field.examples:
        return None
    return json.dumps(field.examples[0])


def _value_message(kind: str, ctx: dict[str, Any], error: Any, label: str, hint: str | None) -> str:
    if hint is not None and kind != "missing":
        return f"{label} must be {hint}"
    if kind == "missing":
        return f"{label} is required" + (f": {hint}" if hint else "")
    simple = {
        "string_type": "a JSON string",
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "list_type": "a JSON array",
        "dict_type": "a JSON object",
        "model_type": "a JSON object",
        "model_attributes_type": "a JSON object",
        "float_type": "a number",
        "float_parsing": "a number",
    }
    if kind in simple:
        return f"{label} must be {simple[kind]}"
    bounds = {
        "string_too_short": ("at least", "min_length", "character"),
        "string_too_long": ("at most", "max_length", "character"),
        "too_short": ("at least", "min_length", "item"),
        "too_long": ("at most", "max_length", "item"),
    }
    if kind in bounds:
        word, field, unit = bounds[kind]
        count = ctx.get(field)
        return f"{label} must have {word} {count} {unit}{'' if count == 1 else 's'}"
    comparisons = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in comparisons:
        word, field = comparisons[kind]
        return f"{label} must be {word} {ctx.get(field)}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        if pattern in PATTERNS:
            return f"{label} must be {PATTERNS[pattern]}"
        return f"{label} must match the pattern {pattern}"
    if kind == "literal_error":
        return f"{label} must be one of {ctx.get('expected')}"
    if kind == "enum":
        return f"{label} must be one of {ctx.get('expected')}"
    message = str(error.get("msg", "is not valid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return f"{label}: {message}"


def _owner(
    model: type[BaseModel] | None, path: tuple[Any, ...]
) -> tuple[type[BaseModel] | None, str | None]:
    """The model holding the field at ``path`` in a body of ``model``, and the field's name."""
    current: Any = model
    owner: type[BaseModel] | None = None
    name: str | None = None
    for part in path:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            name = None
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner, name = current, str(part)
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
        else:
            owner, name = None, str(part)
            current = None
    return owner, name


def _field_model(owner: type[BaseModel], name: str | None) -> type[BaseModel] | None:
    field = owner.model_fields.get(name or "")
    target = _unwrap(field.annotation) if field is not None else None
    if isinstance(target, type) and issubclass(target, BaseModel):
        return target
    return None


def _unwrap(annotation: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); ``annotation`` otherwise."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
