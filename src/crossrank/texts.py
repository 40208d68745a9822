"""Checks on the text crossrank is given: strings, and strings that are Unicode text.

One kind of Python ``str`` is not Unicode text: one holding UTF-16 surrogates. JSON allows
escapes such as ``"\\ud83d"``, so a client that cuts a string between the two halves of an
emoji (JavaScript's ``slice`` does) sends text that decodes to a lone surrogate, and
``tokenizers`` and every UTF-8 encoder reject it. crossrank looks for it where text enters:
the library (:func:`check_text`) and the server refuse it with a message that says where it
is; corpus files get U+FFFD instead, as their undecodable bytes do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from crossrank.errors import InvalidInput

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def surrogate_at(text: str) -> int | None:
    """Index of the first surrogate code point in ``text``, or None."""
    if text.isascii():
        return None
    match = _SURROGATE.search(text)
    return match.start() if match else None


def check_text(value: Any, what: str) -> str:
    """``value`` if it is a string of Unicode text, else :class:`InvalidInput` naming ``what``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    position = surrogate_at(value)
    if position is not None:
        raise InvalidInput(surrogate_message(what, value, position))
    return value


def check_documents(documents: Any) -> list[str]:
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Iterable):
        raise InvalidInput("documents must be a list of strings (got a single value)")
    return [check_text(doc, f"documents[{i}]") for i, doc in enumerate(documents)]


def check_pairs(pairs: Any) -> list[tuple[str, str]]:
    """``pairs`` as a list of (query, document) tuples of Unicode text, else :class:`InvalidInput`
    naming the first bad one."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise InvalidInput("pairs must be a list of (query, document) tuples")
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidInput(f"pairs[{i}] must be a (query, document) pair")
        checked.append((check_text(pair[0], f"pairs[{i}] query"), check_text(pair[1], f"pairs[{i}] document")))
    return checked


def surrogate_message(what: str, text: str, position: int) -> str:
    before = text[max(0, position - 20):position]
    return (
        f"{what} contains an unpaired UTF-16 surrogate (U+{ord(text[position]):04X} at character "
        f"{position}, after {ascii(before)}), which is not valid Unicode; send well-formed text "
        f"(cutting a string between the two halves of an emoji leaves one)"
    )


def replace_surrogates(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if surrogate_at(text) is not None else text


def may_hold_surrogates(body: bytes) -> bool:
    """Cheap test on raw JSON: does it escape a surrogate at all (paired or not)?"""
    return b"\\u" in body and _ESCAPE.search(body) is not None


def surrogate_in(value: Any) -> str | None:
    """Message for the first string (key or value) in parsed JSON that holds a surrogate.

    Iterative, so that the deepest nesting ``json.loads`` accepts cannot overflow the stack.
    """
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            position = surrogate_at(item)
            if position is not None:
                return surrogate_message(path, item, position)
        elif isinstance(item, dict):
            for key in item:  # keys first: a bad key must not reach a path
                position = surrogate_at(key)
                if position is not None:
                    return surrogate_message(f"a key of {path}", key, position)
            stack.extend((child, f"{path}.{key}") for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None
