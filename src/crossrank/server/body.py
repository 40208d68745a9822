"""Request bodies as JSON, read strictly and parsed once.

What Python's ``json.loads(bytes)`` accepts is wider than JSON over HTTP (RFC 8259): it guesses
UTF-16 and UTF-32, decodes with ``surrogatepass`` (so the bytes ``ED A0 80`` become the lone
surrogate ``'\\ud800'``, which no tokenizer or UTF-8 encoder takes), and reads ``NaN``,
``Infinity`` and ``1e999`` as floats that no JSON encoder can write back. :func:`decode_json`
takes UTF-8 only (a UTF-8 byte order mark is skipped, as RFC 8259 allows), refuses non-finite
numbers, and refuses escaped lone surrogates (``"\\ud83d"``, half an emoji) with their place.

The request gate (:mod:`crossrank.server.gate`) runs it once per body, in a worker thread for
large ones, and leaves the value in the ASGI scope; :class:`ParsedBodyRoute` hands that value to
FastAPI instead of letting it parse the body again, and :func:`parsed_json` to handlers that
read the body themselves.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from crossrank.errors import InvalidInput, MalformedBody
from crossrank.texts import may_hold_surrogates, surrogate_in

#: the ASGI scope key that holds a request's parsed body
PARSED = "crossrank.json"

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class _Refused(ValueError):
    """A number JSON does not have, found while parsing."""


def _no_constant(name: str) -> Any:
    raise _Refused(f"the body holds {name}, which is not a JSON number; send a finite number or null")


def _finite(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the body holds the number {literal[:40]}, beyond the range of a 64-bit float; "
                       f"send a smaller number")
    return value


def _utf8(body: bytes) -> str:
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8):]
    if body.startswith(_UTF16_BOMS) or b"\0" in body[:2]:
        raise MalformedBody("the body looks like UTF-16 or UTF-32 (a byte order mark or a zero byte at its start); "
                            "send JSON encoded as UTF-8")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start:exc.start + 3]
        hint = ""
        if len(bad) > 1 and bad[0] == 0xED and 0xA0 <= bad[1] <= 0xBF:
            hint = ", an encoded UTF-16 surrogate (half an emoji?), which UTF-8 does not allow"
        raise MalformedBody(f"the body is not valid UTF-8: {exc.reason} at byte {exc.start} "
                            f"({bad.hex(' ').upper()}{hint}); send JSON encoded as UTF-8") from None


def decode_json(body: bytes) -> Any:
    """``body`` parsed as JSON; :class:`MalformedBody` (400) naming what is wrong, or
    :class:`InvalidInput` (422) for a string that is not Unicode text."""
    text = _utf8(body)
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _Refused as exc:
        raise MalformedBody(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedBody("the body is not valid JSON: it is nested too deeply to parse") from None
    except ValueError:  # an integer of more digits than Python converts
        raise MalformedBody("the body holds an integer with too many digits to read; send a smaller number") from None
    if may_hold_surrogates(body):
        message = surrogate_in(value)
        if message is not None:
            raise InvalidInput(message)
    return value


async def parsed_json(request: Request) -> Any:
    """The request's body as JSON: as the gate parsed it, else parsed here by the same rules."""
    if PARSED in request.scope:
        return request.scope[PARSED]
    return decode_json(await request.body())


class _ParsedRequest(Request):
    async def json(self) -> Any:
        if PARSED in self.scope:
            return self.scope[PARSED]
        return await super().json()


class ParsedBodyRoute(APIRoute):
    """An ``APIRoute`` whose body parameters take the value the gate parsed (FastAPI's custom
    route class): the body is parsed once, off the event loop when large, and never by the
    laxer ``json.loads(bytes)`` FastAPI would use."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_parsed_body(request: Request) -> Response:
            return await handler(_ParsedRequest(request.scope, request.receive))

        return with_parsed_body
