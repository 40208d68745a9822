"""Bearer-key authentication of the inference routes (health, readiness and metrics stay open).

A route is protected by declaring ``Depends(require_api_key)`` (on itself or its router). The
request gate (:mod:`crossrank.server.gate`) reads that declaration and checks the key from the
headers before it reads or holds any of the body, so a client without the key cannot spend the
server's memory, its in-flight byte budget or its parsing time; the dependency checks again.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request

from crossrank.errors import Unauthorized

MESSAGE = "this route needs the header 'Authorization: Bearer <api key>'"


def authorized(expected: str | None, authorization: str) -> bool:
    """Does an ``Authorization`` header value carry the key (always, when there is no key)?"""
    if not expected:
        return True
    scheme, _, token = authorization.partition(" ")
    # compare in constant time, also when the scheme is wrong
    ok = hmac.compare_digest(token.strip().encode(), expected.encode())
    return scheme.lower() == "bearer" and ok


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: ``Authorization: Bearer <key>`` when the server has a key."""
    if not authorized(request.app.state.settings.api_key, request.headers.get("authorization", "")):
        raise Unauthorized(MESSAGE)


def needs_key(dependant: Any) -> bool:
    """Does a FastAPI dependency tree (a route's ``dependant``) include :func:`require_api_key`?"""
    stack = [dependant]
    while stack:
        node = stack.pop()
        if getattr(node, "call", None) is require_api_key:
            return True
        stack.extend(getattr(node, "dependencies", ()))
    return False
