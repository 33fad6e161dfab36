"""Account filter expressions: decide whether an integration applies to an m3ter Account.

The language mirrors m3ter's integration "Account Filter" and notification calculations::

    address.country == UK
    customFields.country == "UK" AND (currency == 'GBP' OR customFields.tier >= 2)
    NOT customFields.region == null

Grammar (keywords are case-insensitive)::

    expression  := or_expr
    or_expr     := and_expr ("OR" and_expr)*
    and_expr    := not_expr ("AND" not_expr)*
    not_expr    := "NOT" not_expr | comparison | "(" or_expr ")"
    comparison  := operand ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
    operand     := 'string' | "string" | number | null | true | false | field.path

Precedence, tightest first: comparison operators, NOT, AND, OR.  NOT negates the
comparison (or parenthesised group) that follows it, so ``NOT a == b`` means
``NOT (a == b)``: operands are values, not conditions, so NOT has nothing else to bind to.
A bare value such as ``customFields.active`` is not a condition on its own; write
``customFields.active == true``.

Operands
    Strings use single or double quotes with the escapes ``\\\\ \\" \\' \\n \\r \\t \\/ \\uXXXX``.
    Numbers are ``-?digits[.digits]`` and are compared exactly as ``Decimal``.
    Field paths are dot-separated identifiers looked up in nested mappings
    (``customFields.country``, ``address.country``); a missing field is ``null``.

Bare words on the right-hand side (m3ter's documented ``address.country == UK``)
    A path on the RIGHT of a comparison whose first segment is not a key of the
    record being matched is the string literal of its text: ``address.country == UK``
    compares with ``"UK"`` unless the record has a top-level ``UK`` key, in which case it
    is a field reference like any other path.  Quote values to avoid the ambiguity.
    Keywords (AND, OR, NOT, null, true, false) are never bare words; words containing
    characters other than letters, digits and ``_`` (``eu-west``) must be quoted.

Comparison semantics
    * ``x == null`` is true when ``x`` is missing or None; ``x != null`` is its negation.
      Ordering comparisons (``<``, ``<=``, ``>``, ``>=``) involving null are false.
    * number vs number compares numerically; a number vs a string that parses as a
      number (custom fields are ``string | number``) also compares numerically.
    * string vs string compares by code point, case-sensitively.
    * Any other mix of types is unequal and unordered (ordering comparisons are false).
    * ``a != b`` is always ``NOT (a == b)``.

Limits: expressions of at most 4096 characters and 100 levels of NOT/AND/OR nesting.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeAlias, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING_DEPTH",
    "AccountFilter",
    "FilterNotes",
    "FilterSyntaxError",
    "parse_filter",
]

MAX_EXPRESSION_LENGTH = 4096
# Evaluation and AST walks recurse; the bound keeps them far away from Python's stack limit.
MAX_NESTING_DEPTH = 100

_KEYWORDS = ("and", "or", "not", "null", "true", "false")

_GRAMMAR = r"""
?start: disjunction

?disjunction: conjunction (_OR conjunction)*
?conjunction: negation (_AND negation)*
?negation: NOT negation             -> negation
         | comparison
         | _LPAR disjunction _RPAR

comparison: operand COMPARATOR right_operand

?operand: literal
        | PATH                      -> path
?right_operand: literal
              | PATH                -> bare_word
?literal: STRING                    -> string
        | NUMBER                    -> number
        | NULL                      -> null
        | TRUE                      -> true
        | FALSE                     -> false

_OR.2: /or\b/i
_AND.2: /and\b/i
NOT.2: /not\b/i
NULL.2: /null\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
COMPARATOR: "==" | "!=" | "<=" | ">=" | "<" | ">"
_LPAR: "("
_RPAR: ")"
STRING: /"(?:[^"\\\r\n]|\\.)*"/ | /'(?:[^'\\\r\n]|\\.)*'/
NUMBER: /-?[0-9]+(?:\.[0-9]+)?/
PATH: /(?!(?i:KEYWORDS)\b)[^\W\d]\w*(?:\.(?!(?i:KEYWORDS)\b)[^\W\d]\w*)*/

%ignore /\s+/
""".replace("KEYWORDS", "|".join(_KEYWORDS))

# Human descriptions of terminals, in the order they are listed in error messages.
_TERMINAL_DESCRIPTIONS: dict[str, str] = {
    "STRING": "quoted string",
    "NUMBER": "number",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "PATH": "field path",
    "NOT": "NOT",
    "_LPAR": "'('",
    "COMPARATOR": "comparison operator (==, !=, <, <=, >, >=)",
    "_AND": "AND",
    "_OR": "OR",
    "_RPAR": "')'",
    "$END": "end of expression",
}
_VALUE_DESCRIPTIONS = ("quoted string", "number", "true", "false", "null", "field path")
_KEYWORD_TERMINALS = frozenset({"_OR", "_AND", "NOT", "NULL", "TRUE", "FALSE"})

_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "/": "/", "n": "\n", "r": "\r", "t": "\t"}
_SNIPPET_RADIUS = 40


class FilterSyntaxError(ValueError):
    """An account filter expression that cannot be parsed.

    ``position`` is the 0-based character offset; ``line`` and ``column`` are 1-based.
    ``str()`` is the one-line ``message`` followed by the offending line and a caret.
    """

    def __init__(self, reason: str, expression: str, position: int, expected: set[str] | None = None) -> None:
        # The arguments are the exception's args, so it pickles and copies as any exception does.
        super().__init__(reason, expression, position, expected)
        self.reason = reason
        self.expression = expression
        self.position = position
        self.expected = expected
        line_start = expression.rfind("\n", 0, position) + 1
        self.line = expression.count("\n", 0, position) + 1
        self.column = position - line_start + 1
        line_end = expression.find("\n", position)
        line_text = expression[line_start : len(expression) if line_end < 0 else line_end]
        self._snippet, self._caret_offset = _window(line_text, self.column - 1)

    def __str__(self) -> str:
        return f"{self.message}\n{self.pointer}"

    @property
    def message(self) -> str:
        """The error on one line, suitable for logs and Kubernetes status conditions."""
        text = f"{self.reason} at line {self.line}, column {self.column} (position {self.position})"
        if self.expected:
            text += f": expected {_describe_expected(self.expected)}"
        return f"{text}; near: {self._snippet!r}"

    @property
    def pointer(self) -> str:
        """The offending line with a caret under the error position."""
        # Tabs and other control characters would shift the caret; show them as spaces.
        shown = "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in self._snippet)
        return f"    {shown}\n    {' ' * self._caret_offset}^"


def _window(line: str, offset: int) -> tuple[str, int]:
    """Cut a long line down to the part around ``offset``; return it and the new offset."""
    start = max(0, offset - _SNIPPET_RADIUS)
    end = min(len(line), offset + _SNIPPET_RADIUS)
    snippet = line[start:end]
    caret = offset - start
    if start > 0:
        snippet, caret = "..." + snippet, caret + 3
    if end < len(line):
        snippet += "..."
    return snippet, caret


def _describe_expected(expected: set[str]) -> str:
    parts: list[str] = []
    remaining = set(expected)
    if remaining.issuperset(_VALUE_DESCRIPTIONS):
        parts.append("a value (quoted string, number, true, false, null, or field path)")
        remaining.difference_update(_VALUE_DESCRIPTIONS)
    elif "comparison operator (==, !=, <, <=, >, >=)" in remaining and len(remaining) == 1:
        return "a comparison operator (==, !=, <, <=, >, >=)"
    order = list(_TERMINAL_DESCRIPTIONS.values())
    parts.extend(sorted(remaining, key=lambda d: (order.index(d) if d in order else len(order), d)))
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + (", or " if len(parts) > 2 else " or ") + parts[-1]


# --------------------------------------------------------------------------- AST

Value: TypeAlias = str | Decimal | bool | None


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value
    position: int = field(default=0, compare=False, repr=False)

    def resolve(self, record: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class Path:
    """A field reference in a filter (`customFields.tier`), and where it stood in the source for errors."""

    segments: tuple[str, ...]
    position: int = field(default=0, compare=False, repr=False)

    @property
    def dotted(self) -> str:
        return ".".join(self.segments)

    def resolve(self, record: Mapping[str, Any]) -> Any:
        current: Any = record
        for segment in self.segments:
            if not isinstance(current, Mapping) or segment not in current:
                return None
            current = current[segment]
        return current


@dataclass(frozen=True, slots=True)
class BareWord:
    """A right-hand path that is a string literal unless the record has its first segment."""

    path: Path
    position: int = field(default=0, compare=False, repr=False)

    def resolve(self, record: Mapping[str, Any]) -> Any:
        if self.path.segments[0] in record:
            return self.path.resolve(record)
        return self.path.dotted


Operand: TypeAlias = Literal | Path | BareWord


@dataclass(frozen=True, slots=True)
class Comparison:
    left: Operand
    op: str
    right: Operand
    position: int = field(default=0, compare=False, repr=False)
    depth: ClassVar[int] = 1

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return _compare(self.op, self.left.resolve(record), self.right.resolve(record))


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition
    position: int = field(default=0, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return not self.operand.evaluate(record)


@dataclass(frozen=True, slots=True)
class _Junction:
    """Two or more conditions joined by AND (`And`) or OR (`Or`); an And never equals an Or."""

    operands: tuple[Condition, ...]
    position: int = field(default=0, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)


class And(_Junction):
    __slots__ = ()

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return all(operand.evaluate(record) for operand in self.operands)


class Or(_Junction):
    __slots__ = ()

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        return any(operand.evaluate(record) for operand in self.operands)


Condition: TypeAlias = Comparison | Not | And | Or


def _walk_operands(node: Condition) -> Iterator[Operand]:
    if isinstance(node, Comparison):
        yield node.left
        yield node.right
    elif isinstance(node, Not):
        yield from _walk_operands(node.operand)
    else:
        for operand in node.operands:
            yield from _walk_operands(operand)


# ------------------------------------------------------------------ evaluation


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() gives the shortest round-tripping text, so 0.1 compares equal to the literal 0.1.
        return Decimal(repr(value))
    return value


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return None if value.is_nan() else value
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC_TEXT.fullmatch(text):
            try:
                return Decimal(text)
            except InvalidOperation:  # pragma: no cover - the regex only admits valid numbers
                return None
    return None


def _numeric_pair(left: Any, right: Any) -> tuple[Decimal, Decimal] | None:
    """Both sides as numbers when at least one is a number and the other converts."""
    if not (isinstance(left, Decimal) or isinstance(right, Decimal)):
        return None
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is None or right_number is None:
        return None
    return left_number, right_number


def _equals(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    numbers = _numeric_pair(left, right)
    if numbers is not None:
        return numbers[0] == numbers[1]
    if isinstance(left, Decimal) or isinstance(right, Decimal):
        return False
    # bool is compared only with bool: Python would otherwise treat True == 1.
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(comparator: str, left: Any, right: Any) -> bool:
    left, right = _normalise(left), _normalise(right)
    if comparator == "==":
        return _equals(left, right)
    if comparator == "!=":
        return not _equals(left, right)
    order = _ORDERINGS[comparator]
    numbers = _numeric_pair(left, right)
    if numbers is not None:
        return order(*numbers)
    if isinstance(left, str) and isinstance(right, str):
        return order(left, right)
    return False


# --------------------------------------------------------------------- parsing


class _ParseFailure(Exception):
    """Raised from transformer callbacks; converted into FilterSyntaxError with the source."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def _start(token: Token) -> int:
    return token.start_pos if token.start_pos is not None else 0


def _unescape(token: Token) -> str:
    body = str(token)[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = body[i + 1]  # the lexer guarantees a character after every backslash
        position = _start(token) + 1 + i
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "u":
            digits = body[i + 2 : i + 6]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise _ParseFailure(f"invalid escape sequence {body[i : i + 6]!r} in string", position)
            out.append(chr(int(digits, 16)))
            i += 6
        else:
            raise _ParseFailure(f"invalid escape sequence {body[i : i + 2]!r} in string", position)
    return "".join(out)


def _checked_depth(children: tuple[Condition, ...], position: int) -> int:
    depth = 1 + max(child.depth for child in children)
    if depth > MAX_NESTING_DEPTH:
        reason = f"expression is nested too deeply (more than {MAX_NESTING_DEPTH} levels)"
        raise _ParseFailure(reason, position)
    return depth


@v_args(inline=True)
class _ToAst(Transformer[Token, Condition]):
    """Builds the AST while the LALR parser reduces, so no parse tree is ever materialised."""

    def string(self, token: Token) -> Literal:
        return Literal(_unescape(token), _start(token))

    def number(self, token: Token) -> Literal:
        return Literal(Decimal(str(token)), _start(token))

    def null(self, token: Token) -> Literal:
        return Literal(None, _start(token))

    def true(self, token: Token) -> Literal:
        return Literal(True, _start(token))

    def false(self, token: Token) -> Literal:
        return Literal(False, _start(token))

    def path(self, token: Token) -> Path:
        return Path(tuple(str(token).split(".")), _start(token))

    def bare_word(self, token: Token) -> BareWord:
        return BareWord(self.path(token), _start(token))

    def comparison(self, left: Operand, comparator: Token, right: Operand) -> Comparison:
        return Comparison(left, str(comparator), right, left.position)

    def negation(self, keyword: Token, operand: Condition) -> Not:
        return Not(operand, _start(keyword), _checked_depth((operand,), _start(keyword)))

    def conjunction(self, *operands: Condition) -> And:
        position = operands[0].position
        return And(operands, position, _checked_depth(operands, position))

    def disjunction(self, *operands: Condition) -> Or:
        position = operands[0].position
        return Or(operands, position, _checked_depth(operands, position))


_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    transformer=_ToAst(),
    maybe_placeholders=False,
)


def _describe_terminals(names: set[str] | frozenset[str]) -> set[str]:
    return {_TERMINAL_DESCRIPTIONS.get(name, name) for name in names}


def _acceptable(error: UnexpectedInput, fallback: set[str] | frozenset[str]) -> set[str]:
    """Terminals the parser can really take at the error point.

    LALR states are merged, so the lexer's or the state's lookahead set can list terminals
    that would fail after the pending reductions; replaying each candidate is exact.
    """
    interactive = getattr(error, "interactive_parser", None)
    if interactive is not None:
        try:
            return _describe_terminals(interactive.accepts())
        except _ParseFailure:  # pragma: no cover - a reduction hit the nesting limit
            pass
    return _describe_terminals(fallback)


def _syntax_error(expression: str, error: UnexpectedInput) -> FilterSyntaxError:
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = expression[position]
        if char in "\"'":
            return FilterSyntaxError("unterminated string literal", expression=expression, position=position)
        return FilterSyntaxError(
            f"unexpected {char!r}",
            expression=expression,
            position=position,
            expected=_acceptable(error, error.allowed),
        )
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        text = str(token)
        shown = text if len(text) <= 30 else text[:27] + "..."
        kind = "keyword " if token.type in _KEYWORD_TERMINALS else ""
        return FilterSyntaxError(
            f"unexpected {kind}{shown!r}",
            expression=expression,
            position=_start(token),
            expected=_acceptable(error, error.expected),
        )
    expected = set(error.expected) if isinstance(error, UnexpectedToken) else set()
    # Point just past the last meaningful character rather than at trailing whitespace.
    return FilterSyntaxError(
        "empty expression" if not expression.strip() else "unexpected end of expression",
        expression=expression,
        position=len(expression.rstrip()),
        expected=_acceptable(error, expected) or None,
    )


@functools.lru_cache(maxsize=256)
def _compile(expression: str) -> Condition:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise FilterSyntaxError(
            f"expression is too long ({len(expression)} characters, the maximum is {MAX_EXPRESSION_LENGTH})",
            expression=expression,
            position=MAX_EXPRESSION_LENGTH,
        )
    try:
        # The inline transformer makes parse() return the AST root, not a lark Tree.
        root = cast(Condition, _PARSER.parse(expression))
    except UnexpectedInput as error:
        raise _syntax_error(expression, error) from None
    except _ParseFailure as failure:
        raise FilterSyntaxError(failure.reason, expression=expression, position=failure.position) from None
    return root


class AccountFilter:
    """A parsed account filter; immutable, safe to share and to evaluate concurrently."""

    __slots__ = ("_fields", "_root", "_source")

    def __init__(self, source: str, root: Condition) -> None:
        self._source = source
        self._root = root
        self._fields = frozenset(op.dotted for op in _walk_operands(root) if isinstance(op, Path))

    @classmethod
    def parse(cls, expression: str) -> AccountFilter:
        """Parse ``expression``; raise FilterSyntaxError when it is not a valid filter."""
        if not isinstance(expression, str):
            raise TypeError(f"filter expression must be a str, not {type(expression).__name__}")
        return cls(expression, _compile(expression))

    @property
    def root(self) -> Condition:
        return self._root

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether the account ``record`` (m3ter's camelCase JSON shape) passes the filter."""
        return self._root.evaluate(record)

    def fields(self) -> frozenset[str]:
        """Dotted field paths the filter reads; right-hand bare words are not included."""
        return self._fields

    def number_orderings(self) -> list[tuple[str, str]]:
        """(field, comparison as written) for each ordering (<, <=, >, >=) of a field with a number literal."""
        found: list[tuple[str, str]] = []
        for comparison in _comparisons(self._root):
            if comparison.op not in _ORDERINGS:
                continue
            for field_side, other in ((comparison.left, comparison.right), (comparison.right, comparison.left)):
                path = field_side.path if isinstance(field_side, BareWord) else field_side
                if isinstance(path, Path) and isinstance(other, Literal) and isinstance(other.value, Decimal):
                    text = f"{_describe(comparison.left)} {comparison.op} {_describe(comparison.right)}"
                    found.append((path.dotted, text))
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccountFilter):
            return NotImplemented
        return self._root == other._root

    def __hash__(self) -> int:
        return hash(self._root)

    def __repr__(self) -> str:
        return f"AccountFilter.parse({self._source!r})"

    def __str__(self) -> str:
        return self._source


def _comparisons(node: Condition) -> Iterator[Comparison]:
    if isinstance(node, Comparison):
        yield node
    elif isinstance(node, Not):
        yield from _comparisons(node.operand)
    else:
        for operand in node.operands:
            yield from _comparisons(operand)


def _present(record: Mapping[str, Any], segments: tuple[str, ...]) -> bool:
    current: Any = record
    for segment in segments:
        if not isinstance(current, Mapping) or segment not in current:
            return False
        current = current[segment]
    return True


def _describe(operand: Operand) -> str:
    if isinstance(operand, Path):
        return operand.dotted
    if isinstance(operand, BareWord):
        return operand.path.dotted
    if operand.value is None:
        return "null"
    if isinstance(operand.value, str):
        return f'"{operand.value}"'
    return str(operand.value).lower() if isinstance(operand.value, bool) else str(operand.value)


class FilterNotes:
    """What evaluating a filter over real Accounts showed it cannot mean: fields no Account has, and
    comparisons of text with a number (always false). Collected over one pass, reported once."""

    def __init__(self, account_filter: AccountFilter) -> None:
        self._filter = account_filter
        self.accounts = 0
        self._paths = sorted(
            {op.segments for op in _walk_operands(account_filter.root) if isinstance(op, Path)}, key=".".join
        )
        self._present: dict[tuple[str, ...], int] = dict.fromkeys(self._paths, 0)
        self._mixed: dict[str, int] = {}

    def observe(self, record: Mapping[str, Any]) -> None:
        self.accounts += 1
        for path in self._paths:
            if _present(record, path):
                self._present[path] += 1
        for comparison in _comparisons(self._filter.root):
            left = _normalise(comparison.left.resolve(record))
            right = _normalise(comparison.right.resolve(record))
            numbers = [isinstance(v, Decimal) for v in (left, right)]
            texts = [isinstance(v, str) and _as_number(v) is None for v in (left, right)]
            if (numbers[0] and texts[1]) or (numbers[1] and texts[0]):
                text = f"{_describe(comparison.left)} {comparison.op} {_describe(comparison.right)}"
                self._mixed[text] = self._mixed.get(text, 0) + 1

    def warnings(self) -> list[str]:
        """One sentence per problem, naming the field or the comparison; empty when nothing was odd."""
        found: list[str] = []
        if self.accounts:
            for path, seen in self._present.items():
                if seen == 0:
                    found.append(
                        f"accountFilter field {'.'.join(path)!r} is absent on all {self.accounts} Account(s) read, "
                        "so it is null in every comparison; check its name in m3ter (names are case-sensitive)"
                    )
        for text, count in sorted(self._mixed.items()):
            found.append(
                f"accountFilter comparison {text!r} compares text with a number on {count} Account(s), which is "
                "never true; quote the number, or compare a numeric field"
            )
        return found


def parse_filter(expression: str | None) -> AccountFilter | None:
    """Parse an optional filter; ``None`` or blank means "every account" and returns None."""
    if expression is None or not expression.strip():
        return None
    return AccountFilter.parse(expression)
