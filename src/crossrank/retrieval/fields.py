"""Stored fields: the JSON fields a user names at index time, kept with each document and filterable.

``crossrank index --store title,brand,price,details.color`` keeps those values in the
document store (returned with every hit, as they were in the corpus: numbers, lists and
objects included) and indexes their scalar leaves in the lexical index so that filters run
inside the first stage (see :mod:`crossrank.retrieval.filters`). Each stored path ``i``
gets two tantivy fields: ``k{i}`` (strings and booleans, lowercased, exact) and ``n{i}``
(numbers, a fast float field for ranges); ``has`` holds the number of every path present,
for ``exists`` filters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from crossrank.errors import InvalidInput

HAS_FIELD = "has"
MAX_STORED_FIELDS = 64


class _Missing:
    pass


MISSING = _Missing()


def parse_store(values: Iterable[str] | None) -> list[str]:
    """``["title,brand", "price"]`` -> ``["title", "brand", "price"]``: unique names, in order."""
    paths: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip()
            if not name:
                continue
            if name in ("id", "text") or name.startswith(".") or name.endswith(".") or ".." in name:
                raise InvalidInput(f"--store {name!r}: name a JSON field or dotted path (not id/text, "
                                   "which every hit carries already)")
            if name not in paths:
                paths.append(name)
    if len(paths) > MAX_STORED_FIELDS:
        raise InvalidInput(f"at most {MAX_STORED_FIELDS} stored fields, got {len(paths)}")
    return paths


def pluck(obj: Any, path: str) -> Any:
    """The value at ``path`` keeping its shape: a key, else a dotted path; lists on the way give a list.

    :data:`MISSING` when there is none.
    """
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    return _walk(obj, path.split("."))


def _walk(value: Any, keys: Sequence[str]) -> Any:
    if not keys:
        return value
    if isinstance(value, list):
        found = [v for v in (_walk(item, keys) for item in value) if v is not MISSING]
        return found if found else MISSING
    if isinstance(value, dict) and keys[0] in value:
        return _walk(value[keys[0]], keys[1:])
    return MISSING


def stored_fields(obj: Any, paths: Sequence[str]) -> dict[str, Any]:
    """The stored values of a corpus record (absent paths are left out)."""
    out: dict[str, Any] = {}
    for path in paths:
        value = pluck(obj, path)
        if value is not MISSING:
            out[path] = value
    return out


def leaves(value: Any) -> list[Any]:
    """The scalar values in ``value`` (lists flattened; objects and nulls give none)."""
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    if value is None or isinstance(value, dict):
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return []
    return [value]


def keyword(value: str | bool) -> str:
    """How a string or boolean is indexed and matched: exact, case-insensitive."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.lower()


def add_schema_fields(builder: Any, paths: Sequence[str]) -> None:
    """Add the filter fields of ``paths`` (and ``has``) to a tantivy schema under construction."""
    builder.add_text_field(HAS_FIELD, stored=False, tokenizer_name="raw", index_option="basic")
    for i, _ in enumerate(paths):
        builder.add_text_field(f"k{i}", stored=False, tokenizer_name="raw", index_option="basic")
        builder.add_float_field(f"n{i}", stored=False, indexed=True, fast=True)


def add_to_document(document: Any, fields: dict[str, Any], paths: Sequence[str]) -> None:
    """Index the scalar leaves of a document's stored fields for filtering."""
    for i, path in enumerate(paths):
        if path not in fields:
            continue
        values = leaves(fields[path])
        if values:
            document.add_text(HAS_FIELD, str(i))
        for value in values:
            if isinstance(value, (str, bool)):
                document.add_text(f"k{i}", keyword(value))
            elif isinstance(value, (int, float)):
                document.add_float(f"n{i}", float(value))
