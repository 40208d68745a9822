"""``crossrank search``: retrieve from an index and rerank, or rerank one file's paragraphs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from crossrank.cli.common import DEFAULT_MODEL, add_reranker_options, reranker_kwargs
from crossrank.errors import InvalidInput
from crossrank.retrieval.base import RETRIEVER_KINDS, SearchResult
from crossrank.retrieval.filters import FILTER_HELP, parse_filter_expressions
from crossrank.table import format_table, shorten


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "search",
        help="search an index: retrieve candidates, rerank them with a cross-encoder",
        description=(
            "Two-stage search: the first stage (BM25, dense or hybrid) fetches --candidates "
            "documents from INDEX, the cross-encoder rescores them, the best --top-k are printed "
            "with their first-stage rank and score.\n\n"
            "With --file, no index is used: the file is split into paragraphs (blank-line "
            "separated, else one per line) and every paragraph is scored against the question.\n\n"
            "examples:\n"
            "  crossrank search products.idx \"crocs for kids\" --retriever hybrid --candidates 100\n"
            "  crossrank search products.idx \"crocs\" --no-rerank --json\n"
            "  crossrank search products.idx \"crocs for kids\" --filter 'price<40' --filter 'color=navy'\n"
            "  crossrank search --file manual.txt \"how do I reset the device?\""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("index", metavar="INDEX", nargs="?", help="index directory (omit with --file)")
    parser.add_argument("query", metavar="QUERY", nargs="?", help="the search query")
    parser.add_argument("--file", help="rerank the paragraphs of this text file instead of searching an index")
    parser.add_argument(
        "--retriever", choices=RETRIEVER_KINDS, default="bm25",
        help="bm25: exact words, fast; dense: meaning (needs an index built with --encoder); "
        "hybrid: both, fused by reciprocal rank, the best recall (default: bm25)",
    )
    parser.add_argument(
        "--candidates", type=int, default=100,
        help="documents the first stage passes to the reranker; more finds more, reranking cost "
        "grows linearly (default: 100)",
    )
    parser.add_argument("--top-k", type=int, default=10, help="results to print (default: 10)")
    parser.add_argument(
        "--rrf-k", type=int, default=60,
        help="hybrid only: reciprocal rank fusion constant; lower trusts each list's top hits more (default: 60)",
    )
    parser.add_argument(
        "--encoder", help="query encoder for dense/hybrid (default: the one recorded in the index; "
        "a different dimension is refused)",
    )
    parser.add_argument(
        "--filter", action="append", default=[], metavar="EXPR",
        help=f"keep only documents whose stored fields match, inside the first stage: {FILTER_HELP}",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_reranker_options(parser, default_model=DEFAULT_MODEL)
    rerank = parser.add_mutually_exclusive_group()
    rerank.add_argument("--rerank", dest="model", metavar="MODEL", help="cross-encoder to rerank with (same as --model)")
    rerank.add_argument(
        "--no-rerank", action="store_true",
        help="keep the first-stage order (fast, less precise); not valid with --file",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from crossrank.rerank import Reranker
    from crossrank.retrieval.pipeline import Pipeline, search_paragraphs

    if args.file:
        if args.query is not None:
            raise InvalidInput("with --file give only the question (no INDEX)")
        query = args.index
        if query is None:
            raise InvalidInput("give the question to search --file for")
        if args.filter:
            raise InvalidInput("--filter works on an index's stored fields, not on --file paragraphs")
        if args.no_rerank:
            raise InvalidInput("--file scores paragraphs with the cross-encoder; --no-rerank leaves nothing to do")
        try:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise InvalidInput(f"cannot read --file {args.file}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"--file {args.file} is not UTF-8 text") from exc
        result = search_paragraphs(Reranker(args.model, **reranker_kwargs(args)), text, query, top_k=args.top_k)
    else:
        if args.index is None or args.query is None:
            raise InvalidInput("usage: crossrank search INDEX QUERY (or --file FILE QUERY)")
        from crossrank.encode import Encoder
        from crossrank.retrieval.index import Index

        spec = parse_filter_expressions(args.filter) if args.filter else None
        index = Index.open(args.index)
        encoder = Encoder(args.encoder, threads=args.threads) if args.encoder else None
        retriever = index.retriever(args.retriever, encoder=encoder, rrf_k=args.rrf_k)
        reranker = None if args.no_rerank else Reranker(args.model, **reranker_kwargs(args))
        result = Pipeline(retriever, reranker).search(args.query, candidates=args.candidates, top_k=args.top_k,
                                                      filter=spec)
    print_result(result, args.json)
    return 0


def print_result(result: SearchResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    if not result.hits:
        print(f"no results for {result.query!r}", file=sys.stderr)
        return
    stored = any(hit.fields for hit in result.hits)
    first = "paragraph #" if result.retriever == "paragraphs" else f"{result.retriever} rank"
    rows = [
        [
            hit.rank,
            shorten(hit.id, 20),
            hit.first_stage_rank,
            "" if result.retriever == "paragraphs" else f"{hit.first_stage_score:.4f}",
            "" if hit.rerank_score is None else f"{hit.rerank_score:.6f}",
            shorten(hit.text, 70),
        ]
        + ([_fields_text(hit.fields)] if stored else [])
        for hit in result.hits
    ]
    print(format_table(["rank", "id", first, "first score", "rerank score", "text"] + (["fields"] if stored else []),
                       rows, "><>>><" + ("<" if stored else "")))
    timings = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in result.timings_ms.items())
    print(f"\n{result.candidates} candidates from {result.retriever}"
          f"{', reranked by ' + result.reranker if result.reranker else ''}; {timings}", file=sys.stderr)


def _fields_text(fields: dict[str, Any]) -> str:
    """``brand=Crocs price=29.99 color=navy`` (lists and objects as compact JSON, each value shortened)."""
    return " ".join(
        f"{name}={shorten(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), 30)}"
        for name, value in fields.items())
