"""JSON Schema of a wire class, read from its attrs fields: the OpenAPI document's
response shapes are generated from the classes the server builds its JSON from, so the two
cannot drift apart.

Only the types the wire classes use are known (str, int, float, bool, Any, Literal, lists,
``dict[str, …]``, other wire classes, and ``X | None``); any other raises ``TypeError``
when the document is built, not when a request is served.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import attrs

from claude_mem_http.wire.converter import omitted_if_none, wire_name

Schema = dict[str, Any]

_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def type_schema(tp: Any) -> Schema:
    """The JSON Schema of one attribute type; wire classes are referenced by name."""
    if tp is Any:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    if attrs.has(tp):
        return ref(tp.__name__)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if len(args) == 1:
            return {"const": args[0]}
        return {"type": "string", "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:
        values = type_schema(args[1])
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        nullable = len(members) < len(args)
        if len(members) > 1:
            inner = [type_schema(m) for m in members]
            if all(set(s) == {"type"} for s in inner):
                return {"type": [s["type"] for s in inner] + (["null"] if nullable else [])}
            return {"oneOf": inner + ([{"type": "null"}] if nullable else [])}
        return _nullable(type_schema(members[0])) if nullable else type_schema(members[0])
    raise TypeError(f"no JSON Schema for the wire type {tp!r}")


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    if "enum" in schema:
        return {**schema, "type": [schema["type"], "null"], "enum": [*schema["enum"], None]}
    if "type" in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return schema  # Any already admits null


def class_schema(cls: type) -> Schema:
    """A wire class as a closed JSON object: every member it sends, required unless it is
    left out while None."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Schema] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        name = wire_name(field)
        tp = hints[field.name]
        if omitted_if_none(field) and not field.metadata.get("null_is_sent"):
            # Absent rather than null: the member's own type, without the None.
            tp = typing.Union[tuple(a for a in typing.get_args(tp) if a is not type(None))]  # noqa: UP007
        elif not omitted_if_none(field):
            required.append(name)
        properties[name] = {**type_schema(tp), **field.metadata.get("schema", {})}
    schema: Schema = {"type": "object", "properties": properties, "required": required}
    if not getattr(cls, "ALLOWS_MORE_MEMBERS", False):
        schema["additionalProperties"] = False
    return schema


def component_schemas(classes: list[type]) -> dict[str, Schema]:
    """The named schemas of ``classes`` and of every wire class they hold, by class name."""
    found: dict[str, Schema] = {}
    pending = list(classes)
    while pending:
        cls = pending.pop(0)
        if cls.__name__ in found:
            continue
        found[cls.__name__] = class_schema(cls)
        hints = typing.get_type_hints(cls)
        pending += [tp for tp in _held_classes(hints.values())]
    return found


def _held_classes(hints: Any) -> list[type]:
    held: list[type] = []
    for tp in hints:
        if attrs.has(tp):
            held.append(tp)
        else:
            held += _held_classes(typing.get_args(tp))
    return held
