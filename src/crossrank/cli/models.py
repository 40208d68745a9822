"""``crossrank models``: the catalogue of known models."""

from __future__ import annotations

import argparse
import json
from typing import Any

from crossrank.models.catalogue import list_supported_models
from crossrank.table import format_table, shorten


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "models",
        help="list the catalogue of known models",
        description="List the models crossrank knows by name (any other hub model loads too).",
    )
    parser.add_argument("--kind", choices=("cross-encoder", "bi-encoder"), help="only this kind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def _head(model: dict[str, Any]) -> str:
    """``st-modules``, ``llm-yes-no (qwen3-reranker)``; ``-`` for bi-encoders."""
    if model["kind"] != "cross-encoder":
        return "-"
    return f"{model['head']} ({model['template']})" if model["template"] else str(model["head"])


def run(args: argparse.Namespace) -> int:
    models = list_supported_models(args.kind)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    rows = [
        [m["name"], m["kind"], _head(m), f"{m['size_gb']:.2f}", m["license"], m["max_length"],
         shorten(m["practical"] or "-", 40), shorten(m["description"], 60)]
        for m in models
    ]
    print(format_table(["name", "kind", "head", "GB", "license", "max len", "practical", "description"], rows, "<<<><><<"))
    aliases = [(m["name"], a) for m in models for a in m["aliases"]]
    if aliases:
        print("\naliases: " + "; ".join(f"{a} -> {n}" for n, a in aliases))
    return 0
