"""Filters on stored fields, applied inside the first stage.

The shape (Python, ``POST /search`` JSON) is one object; every entry must hold (AND)::

    {"color": "navy",                       # term: equal (strings: case-insensitive)
     "brand": ["Crocs", "Skechers"],        # terms: equal to any of them
     "price": {"gte": 10, "lt": 40},        # range on numbers: gt, gte, lt, lte
     "details.color": {"exists": true}}     # the field holds a value (false: it holds none)

``{"term": v}`` and ``{"terms": [...]}`` are accepted too. A list-valued field matches when
any of its items does. The command line writes the same filters as ``FIELD=VALUE``,
``FIELD=A|B``, ``FIELD<N`` (``<=``, ``>``, ``>=``), ``FIELD?`` (exists) and ``!FIELD?``
(missing); see :func:`parse_filter_expressions`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.retrieval.fields import HAS_FIELD, keyword

RANGE_KEYS = ("gt", "gte", "lt", "lte")
Scalar = str | int | float | bool

FILTER_HELP = (
    "FIELD=VALUE (equal; text is case-insensitive), FIELD=A|B (any of), FIELD<N, FIELD<=N, FIELD>N, "
    "FIELD>=N (numbers), FIELD? (has a value), !FIELD? (has none); repeat --filter to AND them, e.g. "
    "--filter 'price<40' --filter 'color=navy'. Only fields stored at index time (--store) can be filtered"
)


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    raise InvalidInput(f"filter {where}: expected a string, number or true/false, got {value!r}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"filter {where}: a range bound must be a number, got {value!r}")
    return float(value)


def normalize_filter(spec: Any, stored: Sequence[str]) -> list[tuple[str, str, Any]]:
    """``spec`` checked against the stored fields, as ``(path, kind, argument)`` conditions.

    kinds: ``terms`` (a list of scalars), ``range`` ({gt/gte/lt/lte: float}), ``exists`` (bool).
    """
    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise InvalidInput("filter must be an object mapping stored fields to conditions, e.g. "
                           '{"price": {"lt": 40}, "color": "navy"}')
    conditions: list[tuple[str, str, Any]] = []
    for path, condition in spec.items():
        if path not in stored:
            known = ", ".join(stored) if stored else "none (index with --store FIELD,... to filter)"
            raise InvalidInput(f"filter on {path!r}: it is not a stored field of this index; stored fields: {known}")
        conditions.append(_condition(str(path), condition))
    return conditions


def _condition(path: str, condition: Any) -> tuple[str, str, Any]:
    if isinstance(condition, list):
        if not condition:
            raise InvalidInput(f"filter {path}: an empty list matches nothing; give at least one value")
        return path, "terms", [_scalar(v, path) for v in condition]
    if not isinstance(condition, dict):
        return path, "terms", [_scalar(condition, path)]
    keys = set(condition)
    if keys and keys <= set(RANGE_KEYS):
        return path, "range", {key: _number(condition[key], f"{path}.{key}") for key in RANGE_KEYS if key in keys}
    if keys == {"term"}:
        return path, "terms", [_scalar(condition["term"], path)]
    if keys == {"terms"}:
        return _condition(path, condition["terms"] if isinstance(condition["terms"], list) else [condition["terms"]])
    if keys == {"exists"} and isinstance(condition["exists"], bool):
        return path, "exists", condition["exists"]
    raise InvalidInput(f"filter {path}: {condition!r} is not a condition; use a value, a list of values, "
                       '{"gt"/"gte"/"lt"/"lte": number}, {"term": v}, {"terms": [...]} or {"exists": true/false}')


def filter_query(schema: Any, conditions: list[tuple[str, str, Any]], stored: Sequence[str]) -> Any:
    """The tantivy query matching every condition (a boolean query of MUST clauses)."""
    tantivy = _tantivy()
    clauses = []
    for path, kind, argument in conditions:
        i = list(stored).index(path)
        if kind == "terms":
            clauses.append((tantivy.Occur.Must, _terms(tantivy, schema, i, argument)))
        elif kind == "range":
            clauses.append((tantivy.Occur.Must, _range(tantivy, schema, i, argument)))
        else:
            present = tantivy.Query.term_query(schema, HAS_FIELD, str(i))
            if argument:
                clauses.append((tantivy.Occur.Must, present))
            else:
                clauses.append((tantivy.Occur.Must, tantivy.Query.all_query()))
                clauses.append((tantivy.Occur.MustNot, present))
    return tantivy.Query.boolean_query(clauses)


def _terms(tantivy: Any, schema: Any, i: int, values: list[Scalar]) -> Any:
    options = []
    words = [keyword(v) for v in values if isinstance(v, (str, bool))]
    if words:
        options.append(tantivy.Query.term_set_query(schema, f"k{i}", words))
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            options.append(tantivy.Query.range_query(schema, f"n{i}", tantivy.FieldType.Float, number, number))
            # a number also matches the same digits stored as text (ids, sizes written as strings)
            spelled = {str(value), repr(number)} | ({str(int(number))} if number.is_integer() else set())
            options.append(tantivy.Query.term_set_query(schema, f"k{i}", sorted(spelled)))
    if len(options) == 1:
        return options[0]
    return tantivy.Query.boolean_query([(tantivy.Occur.Should, option) for option in options])


def _range(tantivy: Any, schema: Any, i: int, bounds: dict[str, float]) -> Any:
    # the tighter bound of each side wins; on a tie the exclusive one (gt over gte, lt over lte)
    lows = [(bounds[k], k == "gte") for k in ("gt", "gte") if k in bounds]
    highs = [(bounds[k], k == "lte") for k in ("lt", "lte") if k in bounds]
    lower, include_lower = max(lows, key=lambda b: (b[0], not b[1])) if lows else (None, True)
    upper, include_upper = min(highs, key=lambda b: (b[0], b[1])) if highs else (None, True)
    if lower is not None and upper is not None and (lower > upper or (lower == upper and not (
            include_lower and include_upper))):
        return tantivy.Query.empty_query()
    return tantivy.Query.range_query(schema, f"n{i}", tantivy.FieldType.Float, lower, upper,
                                     include_lower, include_upper)


def _tantivy() -> Any:
    from crossrank.extras import require

    return require("tantivy", "index", "filtering")


_EXPRESSION = re.compile(r"^\s*(?P<field>[^<>=!?]+?)\s*(?P<op><=|>=|<|>|=)\s*(?P<value>.*?)\s*$")


def _cli_value(text: str) -> Scalar:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if re.fullmatch(r"[+-]?\d+", text) else number


def parse_filter_expressions(expressions: Sequence[str]) -> dict[str, Any]:
    """``["price<40", "color=navy"]`` -> ``{"price": {"lt": 40}, "color": "navy"}`` (see :data:`FILTER_HELP`)."""
    spec: dict[str, Any] = {}
    for expression in expressions:
        text = expression.strip()
        if text.endswith("?") and not any(op in text for op in "<>="):
            negated = text.startswith("!")
            name = text[1 if negated else 0:-1].strip()
            if not name:
                raise InvalidInput(f"--filter {expression!r}: name a field, e.g. 'details.color?'")
            spec[name] = {"exists": not negated}
            continue
        match = _EXPRESSION.match(text)
        if match is None or not match["value"]:
            raise InvalidInput(f"--filter {expression!r} is not a filter; write {FILTER_HELP}")
        name, op, raw = match["field"], match["op"], match["value"]
        if op == "=":
            values = [_cli_value(part.strip()) for part in raw.split("|") if part.strip()]
            spec[name] = values[0] if len(values) == 1 else values
            continue
        value = _cli_value(raw)
        if isinstance(value, (bool, str)):
            raise InvalidInput(f"--filter {expression!r}: {op} compares numbers; {raw!r} is not a number")
        key = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        current = spec.get(name)
        spec[name] = {**(current if isinstance(current, dict) and "exists" not in current else {}), key: value}
    return spec
