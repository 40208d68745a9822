"""Bearer-key authentication of the inference routes (health, readiness and metrics stay open)."""

from __future__ import annotations

import hmac

from fastapi import Request

from crossrank.server.errors import Unauthorized


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: ``Authorization: Bearer <key>`` when the server has a key."""
    expected: str | None = request.app.state.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # compare in constant time, also when the scheme is wrong
    ok = hmac.compare_digest(token.strip().encode(), expected.encode())
    if scheme.lower() != "bearer" or not ok:
        raise Unauthorized("this route needs the header 'Authorization: Bearer <api key>'")
