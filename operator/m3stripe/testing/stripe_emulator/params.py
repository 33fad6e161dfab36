"""Declarative request-parameter schemas that validate and coerce decoded form values.

Each ``Param.parse`` gets the raw decoded value and the parameter's display name (``price_data[product]``)
and returns a Python value, or raises a Stripe-shaped 400. Parameters that accept ``""`` to unset a
field (``Literal['']`` in the SDK's types) return ``None`` for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from . import currencies
from .errors import empty_parameter, invalid, missing_parameter, unknown_parameter
from .forms import FormValue

INT64_MAX = 2**63 - 1
_INT_RE = re.compile(r"^-?\d+$")
_DECIMAL_RE = re.compile(r"^-?(\d+)(\.(\d+))?$")


def child_name(parent: str, key: str) -> str:
    return f"{parent}[{key}]" if parent else key


class Param:
    """A parameter type; ``emptyable`` lets ``""`` through as ``None`` (unset)."""

    emptyable: bool = False

    def parse(self, value: FormValue, name: str) -> Any:
        if value == "":
            if self.emptyable:
                return None
            raise empty_parameter(name)
        return self.coerce(value, name)

    def coerce(self, value: FormValue, name: str) -> Any:
        raise NotImplementedError


class Str(Param):
    def __init__(self, max_length: int = 5000, *, emptyable: bool = False) -> None:
        self.max_length = max_length
        self.emptyable = emptyable

    def coerce(self, value: FormValue, name: str) -> str:
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {name} must be a string, not an object.", param=name)
        if len(value) > self.max_length:
            raise invalid(f"Invalid string: {value[:20]}...; must be at most {self.max_length} characters", param=name)
        return value


class Email(Str):
    _EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    def __init__(self, *, emptyable: bool = False) -> None:
        super().__init__(512, emptyable=emptyable)

    def coerce(self, value: FormValue, name: str) -> str:
        text = super().coerce(value, name)
        if not self._EMAIL_RE.match(text):
            raise invalid(f"Invalid email address: {text}", param=name, code="email_invalid")
        return text


class Int(Param):
    def __init__(self, minimum: int | None = None, maximum: int | None = None, *, emptyable: bool = False):
        self.minimum = minimum
        self.maximum = maximum
        self.emptyable = emptyable

    def coerce(self, value: FormValue, name: str) -> int:
        if not isinstance(value, str) or not _INT_RE.match(value):
            raise invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
        number = int(value)
        if abs(number) > INT64_MAX:
            raise invalid(
                f"Invalid integer: {value}; must be a 64-bit integer",
                param=name,
                code="parameter_invalid_integer",
            )
        if self.minimum is not None and number < self.minimum:
            raise invalid(
                f"Invalid {name}: must be greater than or equal to {self.minimum}",
                param=name,
                code="parameter_invalid_integer",
            )
        if self.maximum is not None and number > self.maximum:
            raise invalid(
                f"Invalid {name}: must be less than or equal to {self.maximum}",
                param=name,
                code="parameter_invalid_integer",
            )
        return number


class Bool(Param):
    def coerce(self, value: FormValue, name: str) -> bool:
        if value == "true":
            return True
        if value == "false":
            return False
        raise invalid(f"Invalid boolean: {value if isinstance(value, str) else 'object'}", param=name)


class Enum(Param):
    def __init__(self, *values: str, emptyable: bool = False) -> None:
        self.values = values
        self.emptyable = emptyable

    def coerce(self, value: FormValue, name: str) -> str:
        if value not in self.values:
            listed = ", ".join(self.values[:-1]) + f", or {self.values[-1]}" if len(self.values) > 1 else ""
            raise invalid(f"Invalid {name}: must be one of {listed or self.values[0]}", param=name)
        assert isinstance(value, str)
        return value


class DecimalStr(Param):
    """A decimal string such as ``unit_amount_decimal`` (at most ``places`` decimal places)."""

    def __init__(self, places: int = 12, *, minimum: Decimal | None = None) -> None:
        self.places = places
        self.minimum = minimum

    def coerce(self, value: FormValue, name: str) -> Decimal:
        match = _DECIMAL_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise invalid(f"Invalid decimal: {value}", param=name)
        if match.group(3) and len(match.group(3)) > self.places:
            raise invalid(
                f"Invalid decimal: {value}; must contain at maximum {self.places} decimal places.", param=name
            )
        try:
            number = Decimal(str(value))
        except InvalidOperation:  # pragma: no cover - the regex already rules this out
            raise invalid(f"Invalid decimal: {value}", param=name) from None
        if self.minimum is not None and number < self.minimum:
            raise invalid(f"Invalid {name}: must be greater than or equal to {self.minimum}", param=name)
        return number


class Currency(Param):
    def coerce(self, value: FormValue, name: str) -> str:
        if not isinstance(value, str):
            raise invalid(f"Invalid currency: {name} must be a string", param=name)
        code = value.lower()
        if code not in currencies.SUPPORTED:
            raise invalid(
                f"Invalid currency: {code}. Stripe currently supports these currencies: "
                + ", ".join(sorted(currencies.SUPPORTED)),
                param=name,
            )
        return code


class Metadata(Param):
    """Up to 50 keys of at most 40 characters; values at most 500 characters; ``""`` unsets."""

    emptyable = True

    def coerce(self, value: FormValue, name: str) -> dict[str, str | None]:
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {name} must be a hash of key-value pairs", param=name)
        if len(value) > 50:
            raise invalid(f"Invalid {name}: you can have up to 50 keys, but you passed in {len(value)}", param=name)
        out: dict[str, str | None] = {}
        for key, item in value.items():
            if len(key) > 40:
                raise invalid(
                    f"Metadata keys can have up to 40 characters, but you passed in a key that is {len(key)} "
                    f"characters. Invalid key: {key}",
                    param=child_name(name, key),
                )
            if not isinstance(item, str):
                raise invalid(f"Invalid value for metadata key '{key}': must be a string", param=child_name(name, key))
            if len(item) > 500:
                raise invalid(
                    f"Metadata values can have up to 500 characters, but you passed in a value that is "
                    f"{len(item)} characters. Invalid value: {item[:20]}...",
                    param=child_name(name, key),
                )
            out[key] = item or None
        return out


class Obj(Param):
    """A hash with known keys; unknown keys answer ``parameter_unknown`` naming the full path."""

    def __init__(self, fields: Mapping[str, Param], *, required: Iterable[str] = (), emptyable: bool = False) -> None:
        self.fields = dict(fields)
        self.required = tuple(required)
        self.emptyable = emptyable

    def coerce(self, value: FormValue, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {name} must be a hash", param=name)
        return self.parse_fields(value, name)

    def parse_fields(self, value: Mapping[str, FormValue], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            field = self.fields.get(key)
            if field is None:
                raise unknown_parameter(child_name(prefix, key))
            out[key] = field.parse(item, child_name(prefix, key))
        for key in self.required:
            if key not in value:
                raise missing_parameter(child_name(prefix, key))
        return out


class Arr(Param):
    """An indexed array (``a[0]=x``); encoded as a dict keyed by consecutive index strings."""

    def __init__(self, item: Param, *, max_items: int | None = None, emptyable: bool = False) -> None:
        self.item = item
        self.max_items = max_items
        self.emptyable = emptyable

    def coerce(self, value: FormValue, name: str) -> list[Any]:
        if not isinstance(value, dict) or not all(k.isdigit() for k in value):
            raise invalid(f"Invalid array: {name} must be an array", param=name)
        indexes = sorted(value, key=int)
        if [int(i) for i in indexes] != list(range(len(indexes))):
            raise invalid(f"Invalid array: {name} must be indexed from 0 without gaps", param=name)
        if self.max_items is not None and len(indexes) > self.max_items:
            raise invalid(
                f"Invalid array: {name} must have at most {self.max_items} elements, but you passed {len(indexes)}",
                param=name,
            )
        return [self.item.parse(value[i], f"{name}[{i}]") for i in indexes]


class IntOrRange(Param):
    """A ``created``-style filter: an exact integer or ``{gt, gte, lt, lte}``."""

    _range = Obj({"gt": Int(), "gte": Int(), "lt": Int(), "lte": Int()})

    def coerce(self, value: FormValue, name: str) -> dict[str, int]:
        if isinstance(value, dict):
            parsed: dict[str, int] = self._range.coerce(value, name)
            return parsed
        return {"eq": Int().coerce(value, name)}


def matches_range(value: int | None, bounds: Mapping[str, int]) -> bool:
    if value is None:
        return False
    checks = {
        "eq": value.__eq__,
        "gt": value.__gt__,
        "gte": value.__ge__,
        "lt": value.__lt__,
        "lte": value.__le__,
    }
    return all(checks[op](bound) for op, bound in bounds.items())


EXPAND = Arr(Str())
PAGINATION: dict[str, Param] = {
    "limit": Int(1, 100),
    "starting_after": Str(),
    "ending_before": Str(),
    "expand": EXPAND,
}


class Schema:
    """The top-level parameters of one endpoint; ``expand`` is always accepted, as on Stripe."""

    def __init__(self, fields: Mapping[str, Param] | None = None, *, required: Iterable[str] = ()) -> None:
        self.obj = Obj({"expand": EXPAND, **(fields or {})}, required=required)

    @property
    def fields(self) -> dict[str, Param]:
        return self.obj.fields

    def parse(self, params: Mapping[str, FormValue]) -> dict[str, Any]:
        return self.obj.parse_fields(params, "")
