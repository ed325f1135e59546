"""One wire definition (issue #14): every route's answer is a wire class, the OpenAPI
document's schema of it is the one generated from that class, and the one converter turns
any instance into JSON and back without loss."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Union

import attrs
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_mem_http.wire import openapi
from claude_mem_http.wire.attrs_schema import component_schemas, type_schema
from claude_mem_http.wire.bodies import BODY_CLASSES, ROUTE_BODIES
from claude_mem_http.wire.converter import (
    WireMismatch,
    from_wire,
    omitted_if_none,
    to_wire,
    wire_name,
)
from claude_mem_http.wire.models import RESPONSE_CLASSES, EventConflict, SearchHit

DOCUMENT = openapi.DOCUMENT
COMPONENTS = DOCUMENT["components"]["schemas"]
WIRE_CLASSES = [*RESPONSE_CLASSES, *BODY_CLASSES]


def _response_schema(method: str, path: str, status: str) -> Any:
    return DOCUMENT["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"
    ]


@pytest.mark.parametrize(("method", "path", "status"), sorted(ROUTE_BODIES), ids=lambda v: str(v))
def test_documented_answer_is_generated_from_the_routes_wire_class(
    method: str, path: str, status: str
) -> None:
    body = ROUTE_BODIES[(method, path, status)]
    assert _response_schema(method, path, status) == type_schema(body), (
        f"{method} {path} {status} does not document {body}"
    )
    for name, schema in component_schemas(_classes_of(body)).items():
        assert COMPONENTS[name] == schema, f"{name} in the document is not its class's"


def _classes_of(body: Any) -> list[type]:
    return [body] if attrs.has(body) else list(typing.get_args(body))


def test_every_wire_class_component_is_generated() -> None:
    generated = component_schemas(WIRE_CLASSES)
    for name, schema in generated.items():
        assert COMPONENTS[name] == schema, f"{name} in the document is not its class's"


def test_every_body_shaped_answer_of_a_route_is_in_the_table() -> None:
    """A new route answering with a generated body names its class in ROUTE_BODIES."""
    bodies = {cls.__name__ for cls in BODY_CLASSES}
    for path, operations in DOCUMENT["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                ref = (schema or {}).get("$ref", "")
                if ref.rsplit("/", 1)[-1] in bodies:
                    assert (method, path, status) in ROUTE_BODIES, (method, path, status)


# -- the converter ---------------------------------------------------------------------------

_JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
JSON_VALUE = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    if tp is Any:
        return JSON_VALUE
    if tp is None or tp is type(None):
        return st.none()
    if tp is str:
        return st.text(max_size=12)
    if tp is int:
        return st.integers(min_value=-(2**53), max_value=2**53)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is bool:
        return st.booleans()
    if attrs.has(tp):
        return wire_instances(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(_strategy(args[0]), max_size=2)
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), _strategy(args[1]), max_size=3)
    if origin in (Union, types.UnionType):
        return st.one_of([_strategy(a) if a is not type(None) else st.none() for a in args])
    raise TypeError(tp)


def _field_strategy(field: attrs.Attribute[Any], tp: Any) -> st.SearchStrategy[Any]:
    minimum = field.metadata.get("schema", {}).get("minimum")
    if tp is int and minimum is not None:  # the bound the document states
        return st.integers(min_value=minimum, max_value=2**53)
    return _strategy(tp)


def wire_instances(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    return st.builds(cls, **{f.name: _field_strategy(f, hints[f.name]) for f in fields})


@pytest.mark.parametrize("cls", WIRE_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_wire_class_round_trips_through_json(cls: type, data: st.DataObject) -> None:
    value = data.draw(wire_instances(cls))
    sent = json.loads(json.dumps(to_wire(value)))
    assert from_wire(sent, cls) == value
    # What is sent is what the document says is sent.
    schema = {"components": DOCUMENT["components"], **COMPONENTS[cls.__name__]}
    jsonschema.Draft202012Validator(schema).validate(sent)
    for field in attrs.fields(cls):
        if omitted_if_none(field) and getattr(value, field.name) is None:
            assert wire_name(field) not in sent


def test_a_mismatch_names_the_member_by_its_wire_path() -> None:
    with pytest.raises(WireMismatch) as caught:
        from_wire(
            {"observations": [{"createdAtEpoch": "soon"}]},
            ROUTE_BODIES[("post", "/v1/search", "200")],
        )
    problems = caught.value.problems
    assert "$.observations[0].createdAtEpoch: expected int, got str" in problems
    assert "$.observations[0].projectId: required member missing" in problems
    with pytest.raises(WireMismatch, match=r"\$\.eventId: expected str, got bool"):
        from_wire(
            {"error": "Conflict", "message": "m", "eventId": True, "sourceEventId": None},
            EventConflict,
        )
    with pytest.raises(WireMismatch, match=r"\$: expected an object"):
        from_wire([], SearchHit)
