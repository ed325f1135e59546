"""The one converter between the wire classes (:mod:`.models`) and their JSON values.

* Names: an attribute is spelled camelCase on the wire (``project_id`` → ``projectId``),
  unless its metadata names it (``wire_name``).
* Optional members: an attribute marked ``omit_if_none`` is left out while None.
* Decoding is strict: a string is a string, an integer an integer (never a bool), a number
  an int or a float. A body that does not match raises :class:`WireMismatch`, naming the
  member by its wire path (``$.observations[0].createdAtEpoch``).
* Epochs: :func:`epoch_ms` is the one conversion of a time to the wire's integer
  milliseconds since the Unix epoch.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(value: datetime) -> int:
    """A time as the wire has it: whole milliseconds since the Unix epoch (floored)."""
    return (value - _EPOCH) // _MS


def epoch_ms_or_none(value: datetime | None) -> int | None:
    return None if value is None else epoch_ms(value)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_name(field: attrs.Attribute[Any]) -> str:
    named = field.metadata.get("wire_name")
    return named if isinstance(named, str) else camel(field.name)


def omitted_if_none(field: attrs.Attribute[Any]) -> bool:
    return bool(field.metadata.get("omit_if_none"))


class WireMismatch(ValueError):
    """A JSON value that is not the wire class it should be; ``paths`` name the members."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"does not match the wire class {what}: " + "; ".join(problems))


def _strict(kind: type, *, accept: tuple[type, ...] = ()) -> Any:
    allowed = (kind, *accept)

    def check(value: Any, _: Any) -> Any:
        # bool is an int to Python, never to the wire.
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, allowed):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return check


def _path_segment(value: Any, _: Any) -> str | int:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected a string or an integer, got {type(value).__name__}")


def _null(value: Any, _: Any) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__}")


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_as_is(tp: Any) -> bool:
    """Whether values of ``tp`` are JSON values unchanged: scalars, optional scalars, and
    free-form JSON (``Any``, ``dict[str, Any]``: payloads and metadata, stored as JSON)."""
    if tp is Any or tp in _JSON_SCALARS:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return all(_json_as_is(arg) for arg in args)
    return origin is dict and args == (str, Any)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True)
    converter.register_structure_hook(str, _strict(str))
    converter.register_structure_hook(int, _strict(int))
    converter.register_structure_hook(bool, _strict(bool))
    converter.register_structure_hook(float, _strict(float, accept=(int,)))
    converter.register_structure_hook(str | int, _path_segment)
    converter.register_structure_hook(type(None), _null)
    # Values that are JSON already go out as they are: cattrs then reads the attribute in
    # its generated function instead of calling a hook per member (a search answer has
    # ~20 members per hit; this halves what building it costs).
    converter.register_unstructure_hook_func(_json_as_is, identity)

    def unstructure_factory(cls: type) -> Any:
        # Typed Any: cattrs types **kwargs after its own flags, not as attribute overrides.
        overrides: dict[str, Any] = {
            f.name: override(rename=wire_name(f), omit_if_default=omitted_if_none(f))
            for f in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, converter, **overrides)

    def structure_factory(cls: type) -> Any:
        overrides: dict[str, Any] = {
            f.name: override(rename=wire_name(f)) for f in attrs.fields(cls)
        }
        return make_dict_structure_fn(cls, converter, **overrides)

    converter.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    converter.register_structure_hook_factory(attrs.has, structure_factory)
    return converter


CONVERTER = _make_converter()


def to_wire(value: Any) -> Any:
    """A wire class instance (or a list of them) as its JSON value."""
    return CONVERTER.unstructure(value)


def from_wire(value: Any, cls: type[T]) -> T:
    """The JSON ``value`` as a ``cls`` instance; :class:`WireMismatch` if it is not one."""
    if attrs.has(cls) and not isinstance(value, dict):
        raise WireMismatch(cls.__name__, [f"$: expected an object, got {type(value).__name__}"])
    try:
        return CONVERTER.structure(value, cls)
    except Exception as exc:  # cattrs raises what its hooks raise: all mean "not a cls"
        raise WireMismatch(getattr(cls, "__name__", str(cls)), _problems(exc, "$")) from exc


def _problems(exc: BaseException, path: str) -> list[str]:
    """Each problem of a failed decoding, at its wire path (cattrs names the attributes;
    the wire's readers know the members)."""
    if isinstance(exc, ClassValidationError):
        fields = attrs.fields_dict(exc.cl) if attrs.has(exc.cl) else {}
        with_notes, plain = exc.group_exceptions()
        out: list[str] = []
        for inner, note in with_notes:
            field = fields.get(note.name)
            name = note.name if field is None else wire_name(field)
            out += _problems(inner, f"{path}.{name}")
        return out + [p for inner in plain for p in _problems(inner, path)]
    if isinstance(exc, IterableValidationError):
        with_index, plain = exc.group_exceptions()
        out = []
        for inner, index_note in with_index:
            out += _problems(inner, f"{path}[{index_note.index}]")
        return out + [p for inner in plain for p in _problems(inner, path)]
    if isinstance(exc, BaseExceptionGroup):
        return [p for inner in exc.exceptions for p in _problems(inner, path)]
    if isinstance(exc, KeyError):
        return [f"{path}: required member missing"]
    return [f"{path}: {exc}"]
