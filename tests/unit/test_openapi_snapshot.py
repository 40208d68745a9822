"""The server's OpenAPI document against its checked-in snapshot (see tests/openapi_snapshot.py)."""

from __future__ import annotations

import difflib

import pytest

pytest.importorskip("fastapi")

from openapi_snapshot import SNAPSHOT, current_schema, render  # noqa: E402


def test_the_openapi_document_matches_the_snapshot() -> None:
    now = render(current_schema())
    before = SNAPSHOT.read_text() if SNAPSHOT.is_file() else ""
    if now != before:
        diff = difflib.unified_diff(before.splitlines(), now.splitlines(), "snapshot", "server", lineterm="", n=2)
        lines = list(diff)
        shown = "\n".join(lines[:80]) + (f"\n... {len(lines) - 80} more diff lines" if len(lines) > 80 else "")
        pytest.fail(f"The server's OpenAPI document differs from {SNAPSHOT}:\n{shown}\n\n"
                    "If the change of the HTTP surface is intended, refresh the snapshot and commit it:\n"
                    "    PYTHONPATH=src python -m tests.openapi_snapshot --update", pytrace=False)
