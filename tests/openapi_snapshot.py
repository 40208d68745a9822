"""The server's OpenAPI document, as checked in at ``tests/golden/openapi.json``.

Every route the server can serve is included (the wire formats and ``/search``); the package
version is left out so that a release does not change the snapshot. A change of the HTTP
surface shows as a diff in ``tests/unit/test_openapi_snapshot.py``. When it is intended, refresh
the snapshot and commit it with the change::

    PYTHONPATH=src python -m tests.openapi_snapshot --update
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "golden" / "openapi.json"


def current_schema() -> dict[str, Any]:
    """The OpenAPI document of an app with every router (no model is loaded: routes do not depend on them)."""
    from crossrank.server import ServerSettings, create_app, search
    from crossrank.server.app import DEFAULT_ROUTERS
    from crossrank.server.state import ServedModels

    app = create_app(ServedModels([], []), ServerSettings(), routers=(*DEFAULT_ROUTERS, search.build_router))
    schema: dict[str, Any] = json.loads(json.dumps(app.openapi()))  # plain JSON types, as served
    schema["info"].pop("version", None)
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.openapi_snapshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help=f"rewrite {SNAPSHOT}")
    args = parser.parse_args(argv)
    text = render(current_schema())
    if args.update:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
        print(f"wrote {SNAPSHOT}", file=sys.stderr)
        return 0
    same = SNAPSHOT.is_file() and SNAPSHOT.read_text() == text
    print(f"{SNAPSHOT}: {'up to date' if same else 'differs from the server (run with --update)'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
