"""Check a decoded Stripe request against the SDK's generated parameter types for its endpoint.

The stripe SDK is generated from Stripe's OpenAPI spec for one API version (``_ApiVersion.CURRENT``):
each service method names its endpoint (``"/v1/invoices/{invoice}/add_lines"``) and its parameter
``TypedDict`` (``stripe.params.InvoiceAddLinesParams``, with ``NotRequired`` fields, nested
TypedDicts, ``Literal`` enums and ``Literal['']`` for "empty to unset"). This module reads that table
from the SDK's own service sources, so it always describes the installed SDK, and checks a request
decoded from Stripe's form encoding (``forms.decode``) against it: unknown names, wrong nesting,
values outside an enum, arrays sent as hashes, and scalars Stripe's form encoding cannot parse.

Form-encoding rules (what the SDK's ``stripe._encode._api_encode`` writes, and so what Stripe reads):
arrays are indexed (``lines[0][amount]``), hashes bracketed (``metadata[k]``), booleans are
``true``/``false``, integers and Decimals their decimal text, ``None`` is omitted, and ``""`` is sent
as is (Stripe reads it as "unset", valid only where the type allows ``Literal['']``).
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import stripe
import stripe.params
from stripe import _request_options as request_options
from stripe._request_options import RequestOptions
from stripe._stripe_context import StripeContext

from .forms import FormValue

_INT = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_PARAMS_NAME = re.compile(r"\b([A-Z]\w*Params)\b")
# Per-request options the SDK takes out of the params (headers, not form fields): never on the wire.
_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


def pattern(path: str) -> str:
    """A path template with its placeholders blanked: ``/v1/invoices/{invoice}`` -> ``/v1/invoices/{}``."""
    return _PLACEHOLDER.sub("{}", path)


@functools.cache
def endpoint_table() -> dict[tuple[str, str], str]:
    """(METHOD, path pattern) -> the dotted name of the params TypedDict, read from the SDK's service modules.

    The name is qualified by the service's subpackage, as the SDK files its params: a service in
    ``stripe/tax/`` takes its types from ``stripe.params.tax`` (``tax.SettingsUpdateParams``), one at
    the top from ``stripe.params`` (``InvoiceCreateParams``).
    """
    root = Path(stripe.__file__).parent
    table: dict[tuple[str, str], str] = {}
    for source in sorted(root.rglob("_*_service.py")):
        parts = source.relative_to(root).parts
        if "v2" in parts:
            continue  # API v2 is JSON-encoded and not called by the operator
        prefix = "".join(f"{part}." for part in parts[:-1])
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                _read_method(node, table, prefix)
    return table


def _read_method(node: ast.FunctionDef | ast.AsyncFunctionDef, table: dict[tuple[str, str], str], prefix: str) -> None:
    params = next((a for a in node.args.args if a.arg == "params"), None)
    if params is None or params.annotation is None:
        return
    named = _PARAMS_NAME.search(ast.unparse(params.annotation))
    if named is None:
        return
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if call.func.attr not in ("_request", "_request_async", "_request_stream", "_request_stream_async"):
            continue
        if len(call.args) < 2 or not isinstance(call.args[0], ast.Constant):
            continue
        path_node = call.args[1]
        if isinstance(path_node, ast.Call) and isinstance(path_node.func, ast.Attribute):
            path_node = path_node.func.value  # "/v1/x/{id}".format(...)
        if isinstance(path_node, ast.Constant) and isinstance(path_node.value, str):
            table[(str(call.args[0].value).upper(), pattern(path_node.value))] = prefix + named.group(1)
        return


def params_type(method: str, path_template: str) -> type | None:
    """The SDK's params TypedDict for an endpoint (path with ``{placeholders}``), or None if the SDK has none."""
    dotted = endpoint_table().get((method.upper(), pattern(path_template)))
    if dotted is None:
        return None
    package, _, name = dotted.rpartition(".")
    module = importlib.import_module("stripe.params" + (f".{package}" if package else ""))
    found = getattr(module, name, None)
    return found if isinstance(found, type) else None


@dataclass(frozen=True)
class Violation:
    """One way a request breaks the contract: where (``lines[0][price_data][currency]``) and what."""

    param: str
    problem: str

    def __str__(self) -> str:
        return f"{self.param}: {self.problem}" if self.param else self.problem


def check(method: str, path_template: str, form: Mapping[str, FormValue]) -> list[Violation]:
    """Every way ``form`` (a decoded request) disagrees with the SDK's params type for the endpoint."""
    typed = params_type(method, path_template)
    if typed is None:
        if form:
            return [Violation("", f"the SDK has no parameters for {method.upper()} {path_template}")]
        return []
    return _check_typeddict(dict(form), typed, "", top=True)


@functools.cache
def _hints(typed: type) -> dict[str, Any]:
    module = importlib.import_module(typed.__module__)
    # RequestOptions' hints are inherited into every params TypedDict and evaluated here too; they name
    # StripeContext, which their module imports only for type checking.
    namespace = {
        **vars(request_options),
        **vars(stripe.params),
        **vars(module),
        "StripeContext": StripeContext,
    }
    return typing.get_type_hints(typed, globalns=namespace, include_extras=True)


def _required(typed: type) -> frozenset[str]:
    return frozenset(getattr(typed, "__required_keys__", frozenset()))


def _check_typeddict(value: FormValue, typed: type, where: str, *, top: bool = False) -> list[Violation]:
    if not isinstance(value, dict):
        return [Violation(where, f"expected a hash ({typed.__name__}), got the string {value!r}")]
    hints = _hints(typed)
    problems: list[Violation] = []
    for name in sorted(_required(typed) - _OPTION_NAMES - set(value)):
        problems.append(Violation(_child(where, name), "required by the SDK's types but missing"))
    for name, item in value.items():
        hint = hints.get(name)
        if hint is None or (top and name in _OPTION_NAMES):
            problems.append(Violation(_child(where, name), f"unknown parameter (not in {typed.__name__})"))
            continue
        problems.extend(_check(item, hint, _child(where, name)))
    return problems


def _child(where: str, name: str) -> str:
    return f"{where}[{name}]" if where else name


def _unwrap(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Annotated,):
        return _unwrap(typing.get_args(hint)[0])
    name = getattr(origin, "_name", None) or getattr(origin, "__name__", None) or ""
    if name in ("NotRequired", "Required", "ReadOnly"):
        return _unwrap(typing.get_args(hint)[0])
    return hint


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and hasattr(hint, "__required_keys__") and hasattr(hint, "__annotations__")


def _check(value: FormValue, hint: Any, where: str) -> list[Violation]:
    hint = _unwrap(hint)
    origin = typing.get_origin(hint)
    if hint is Any:
        return []
    if origin in (typing.Union, types.UnionType):
        options = _closed_enum(typing.get_args(hint))
        best: list[Violation] | None = None
        for option in options:
            problems = _check(value, option, where)
            if not problems:
                return []
            # A hash failing inside a hash-shaped option says more than "is not ''".
            if isinstance(value, dict) and not _is_container(option):
                continue
            if best is None or len(problems) < len(best):
                best = problems
        if isinstance(value, dict) and best:
            return best
        return [Violation(where, f"{value!r} is not {' or '.join(_describe(o) for o in options)}")]
    if origin is typing.Literal:
        allowed = [_literal_text(v) for v in typing.get_args(hint)]
        if isinstance(value, str) and value in allowed:
            return []
        return [Violation(where, f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")]
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's hints use typing.List
        return _check_list(value, typing.get_args(hint)[0], where)
    if origin in (dict, typing.Dict) or _is_untyped_object(hint):  # noqa: UP006
        args = typing.get_args(hint)
        inner = args[-1] if args else Any
        if not isinstance(value, dict):
            return [Violation(where, f"expected a hash, got the string {value!r}")]
        if inner is str:
            # metadata: "Individual keys can be unset by posting an empty value to them"
            # (https://docs.stripe.com/api/metadata, quoted in the SDK's docstrings).
            return [
                Violation(_child(where, k), "expected a string, got a hash")
                for k, v in value.items()
                if isinstance(v, dict)
            ]
        return [p for key, item in value.items() for p in _check(item, inner, _child(where, key))]
    if _is_typeddict(hint):
        return _check_typeddict(value, hint, where)
    if isinstance(value, dict):
        return [Violation(where, f"expected {_describe(hint)}, got a hash")]
    if value == "":
        # Stripe reads "" as "unset" and refuses it where the parameter cannot be unset; the spec
        # (and so the SDK's types) marks the ones that can with Literal[''].
        return [Violation(where, "an empty string unsets a parameter, and this one cannot be unset")]
    if hint is str:
        return []
    if hint is bool:
        return [] if value in ("true", "false") else [Violation(where, f"{value!r} is not a boolean (true/false)")]
    if hint is int:
        return [] if _INT.match(value) else [Violation(where, f"{value!r} is not an integer")]
    if hint in (float, Decimal):
        return [] if _NUMBER.match(value) else [Violation(where, f"{value!r} is not a decimal number")]
    return [Violation(where, f"the checker does not know the type {hint!r}")]


def _is_container(hint: Any) -> bool:
    hint = _unwrap(hint)
    origin = typing.get_origin(hint)
    return origin in (list, dict, typing.List, typing.Dict) or _is_untyped_object(hint) or _is_typeddict(hint)  # noqa: UP006


def _closed_enum(options: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the SDK's forward-compatibility ``|str`` from ``Literal['a', 'b']|str``.

    The SDK widens enums with ``str`` so that a newer API version's values still type-check; the API
    version it is generated for accepts only the listed values (its OpenAPI enum).
    """
    closed = any(
        typing.get_origin(o) is typing.Literal and any(isinstance(v, str) and v for v in typing.get_args(o))
        for o in options
    )
    return tuple(o for o in options if not (closed and o is str))


def _is_untyped_object(hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    return getattr(origin, "__name__", "") in ("UntypedStripeObject", "StripeObject")


def _check_list(value: FormValue, inner: Any, where: str) -> list[Violation]:
    if not isinstance(value, dict):
        return [Violation(where, f"expected an array, got the string {value!r}")]
    indexes = sorted(value, key=lambda k: int(k) if k.isdigit() else -1)
    if any(not k.isdigit() for k in indexes) or [int(k) for k in indexes] != list(range(len(indexes))):
        return [Violation(where, f"expected an array indexed 0..n-1, got the keys {sorted(value)}")]
    return [p for key in indexes for p in _check(value[key], inner, f"{where}[{key}]")]


def _literal_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(hint: Any) -> str:
    hint = _unwrap(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(_literal_text(v)) for v in typing.get_args(hint))
    if origin in (list, typing.List):  # noqa: UP006
        return "an array"
    if origin in (dict, typing.Dict) or _is_untyped_object(hint):  # noqa: UP006
        return "a hash"
    return getattr(hint, "__name__", repr(hint))
