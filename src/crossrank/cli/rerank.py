"""``crossrank rerank``: rank documents for one query."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from crossrank.cli.common import add_reranker_options, reranker_kwargs
from crossrank.errors import InvalidInput
from crossrank.rerank import Ranked, Reranker
from crossrank.table import format_table, shorten


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "rerank",
        help="rank documents for a query with a cross-encoder",
        description=(
            "Score every document against the query and print them best first. Documents come "
            "one per line from --docs FILE (or stdin with --docs -), or as JSONL objects with a "
            "'text' field, or from repeated --doc options.\n\n"
            "example: printf 'Crocs Kids Baya Clog\\nLeather boots\\n' | crossrank rerank --query crocs"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--query", "-q", required=True, help="the search query")
    parser.add_argument("--docs", default=None, help="file with one document per line or JSONL; - for stdin")
    parser.add_argument("--doc", action="append", default=[], help="a document (repeatable)")
    parser.add_argument("--top-k", type=int, help="print only the best K documents")
    parser.add_argument("--json", action="store_true", help="print JSON lines {index, score, text}")
    add_reranker_options(parser)
    parser.set_defaults(handler=run)


def parse_documents(lines: Iterable[str]) -> list[str]:
    """Plain lines, or JSONL objects with a ``text`` field (detected per line)."""
    docs = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"line {number}: not valid JSON ({exc})") from exc
            if not isinstance(record.get("text"), str):
                raise InvalidInput(f"line {number}: a JSON document needs a string 'text' field")
            docs.append(record["text"])
        elif line.strip():
            docs.append(line)
    return docs


def _read(path: str | None, stdin: TextIO) -> list[str]:
    if path is None:
        return []
    if path == "-":
        return parse_documents(stdin)
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_documents(handle)
    except OSError as exc:
        raise InvalidInput(f"cannot read --docs {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"--docs {path} is not UTF-8 text") from exc


def print_ranking(ranking: list[Ranked], as_json: bool) -> None:
    if as_json:
        for r in ranking:
            print(json.dumps({"index": r.index, "score": r.score, "text": r.document}, ensure_ascii=False))
        return
    rows = [[rank, r.index, f"{r.score:.6f}", shorten(r.document, 80)] for rank, r in enumerate(ranking, 1)]
    print(format_table(["rank", "input #", "score", "document"], rows, ">>><"))


def run(args: argparse.Namespace) -> int:
    docs = list(args.doc) + _read(args.docs if args.docs or args.doc else "-", sys.stdin)
    if not docs:
        raise InvalidInput("no documents: pass --docs FILE, pipe them on stdin, or use --doc TEXT")
    reranker = Reranker(args.model, **reranker_kwargs(args))
    print_ranking(reranker.rank(args.query, docs, top_k=args.top_k), args.json)
    if reranker.truncated_pairs and not args.json:
        print(f"\n{reranker.truncated_pairs} document(s) were longer than {reranker.max_length} "
              f"tokens and were cut (use --long-documents window to score them whole)", file=sys.stderr)
    return 0
