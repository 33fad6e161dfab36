"""Decode Stripe's ``application/x-www-form-urlencoded`` bracket notation into nested values.

``metadata[k]=v`` becomes ``{"metadata": {"k": "v"}}``; ``custom_fields[0][name]=x`` and
``expand[]=a`` become dicts keyed by index strings. Arrays stay dicts here on purpose: only the
parameter schema knows whether ``metadata[0]`` is an array element or a metadata key named "0".
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from .errors import StripeError

FormValue = str | dict[str, "FormValue"]
FormDict = dict[str, FormValue]


def _split_key(key: str) -> list[str]:
    head, sep, rest = key.partition("[")
    if not sep:
        return [key]
    if not head or not rest.endswith("]"):
        raise StripeError(400, f"Invalid parameter name: {key}", param=key)
    parts = [head]
    for segment in rest[:-1].split("]["):
        if "[" in segment or "]" in segment:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key)
        parts.append(segment)
    return parts


def _display(parts: list[str]) -> str:
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def decode_pairs(pairs: list[tuple[str, str]]) -> FormDict:
    """Nest ``(key, value)`` pairs; a repeated scalar key keeps its last value, like Stripe's Rack."""
    root: FormDict = {}
    for key, value in pairs:
        parts = _split_key(key)
        node = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part == "":
                # "expand[]=a&expand[]=b" appends: give each element the next free index.
                part = str(len(node))
                parts[depth] = part
            if last:
                if isinstance(node.get(part), dict):
                    raise StripeError(400, f"Invalid hash: {_display(parts)}", param=_display(parts))
                node[part] = value
                break
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            elif not isinstance(child, dict):
                raise StripeError(
                    400, f"Invalid hash: {_display(parts[: depth + 1])}", param=_display(parts[: depth + 1])
                )
            node = child
    return root


def decode(text: str) -> FormDict:
    """Decode a query string or a form body."""
    return decode_pairs(parse_qsl(text, keep_blank_values=True))
