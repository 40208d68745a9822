"""``crossrank index``: build or extend an embedded search index from a corpus file."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.retrieval.build import build_index, delete_documents
from crossrank.retrieval.fields import parse_store
from crossrank.retrieval.layout import directory_size, live_generation, read_manifest
from crossrank.retrieval.records import FORMATS, ReadStats, read_records


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "index",
        help="build or extend a search index (BM25, optional dense vectors) from a corpus file",
        description=(
            "Stream a corpus into an index directory: BM25 (tantivy) over the text, stored "
            "documents for display and reranking, and -- with --encoder -- bi-encoder vectors "
            "(usearch HNSW) for dense and hybrid search.\n\n"
            "The build happens in a temporary directory and is published atomically: if it "
            "crashes or you press Ctrl-C, the previous index stays intact and searchable.\n\n"
            "examples:\n"
            "  crossrank index products.jsonl products.idx --id asin --text title\n"
            "  crossrank index corpus.jsonl scifact.idx --encoder ./all-MiniLM-L6-v2   # BEIR\n"
            "  crossrank index more.jsonl products.idx --add --id asin --text title\n"
            "  crossrank index esci.jsonl products.idx --id asin --text title,brand --store title,brand,price,color\n"
            "  crossrank index changed.jsonl products.idx --upsert --id asin --text title,brand\n"
            "  crossrank index gone.txt products.idx --delete          # one id per line\n\n"
            "--upsert and --delete publish a new generation like a build: the BM25 segments are linked "
            "and marked, the vectors file and the stored documents are copied and changed, so each "
            "costs time and disk in proportion to the index (plus embedding the upserted documents)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("corpus", help="corpus file: JSONL, BEIR corpus.jsonl, or plain text (one doc per line); "
                        "gzip, bzip2, xz and zstd files are read as such")
    parser.add_argument("index", help="index directory (created if missing)")
    parser.add_argument(
        "--format", choices=FORMATS, default="auto",
        help="auto: corpus.jsonl is BEIR (_id, title+text), .jsonl/.json/.ndjson is JSONL, anything "
        "else plain text with the line number as id (default: auto)",
    )
    parser.add_argument("--id", dest="id_field", help="JSON field (or dotted path) holding the document id "
                        "(default: id; BEIR: _id)")
    parser.add_argument(
        "--text", dest="text_fields", action="append",
        help="JSON field(s) holding the text; repeat or comma-separate to join several, e.g. "
        "--text title,description (default: text; BEIR: title,text). A dotted path reads nested objects "
        "(details.color), a list gives all its items. Records with none are skipped and counted, and the "
        "report says why each field gave no text",
    )
    parser.add_argument(
        "--store", action="append",
        help="JSON fields (or dotted paths, lists included) kept with each document, returned with every "
        "hit and usable in search filters, e.g. --store title,brand,price,color,details.color "
        "(default: none). --add and --upsert keep the fields the index was built with",
    )
    parser.add_argument(
        "--encoder",
        help="bi-encoder (hub id or local directory, e.g. sentence-transformers/all-MiniLM-L6-v2) to "
        "embed every document for dense/hybrid search; costs one transformer pass per document, "
        "so indexing is 10-100x slower than BM25 alone (default: BM25 only)",
    )
    parser.add_argument(
        "--add", action="store_true",
        help="add the corpus to an existing index (ids already present are skipped); without it an "
        "existing index is replaced once the new one is complete",
    )
    parser.add_argument(
        "--upsert", action="store_true",
        help="add the corpus to an existing index, replacing the documents (text, stored fields, "
        "vector) of ids already there",
    )
    parser.add_argument(
        "--delete", action="store_true",
        help="CORPUS is a file of ids, one per line: remove those documents from the index "
        "(ids not in the index are counted and reported)",
    )
    parser.add_argument(
        "--on-error", choices=("skip", "stop"), default="skip",
        help="a malformed JSONL line: skip it (reported with its line number) or stop the build, "
        "leaving the previous index untouched (default: skip)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256,
        help="documents handled (and embedded) together; larger is faster with an encoder, uses more memory (default: 256)",
    )
    parser.add_argument(
        "--heap-mb", type=int, default=256,
        help="memory for the BM25 writer before it flushes a segment to disk; more is faster for big corpora (default: 256)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for the encoder (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--json", action="store_true", help="print the build report as one JSON object")
    parser.set_defaults(handler=run)


def _text_fields(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    fields = [f.strip() for value in values for f in value.split(",") if f.strip()]
    if not fields:
        raise InvalidInput("--text needs at least one field name")
    return fields


def run(args: argparse.Namespace) -> int:
    from crossrank.encode import Encoder
    from crossrank.progress import bar as progress_bar

    if sum((args.add, args.upsert, args.delete)) > 1:
        raise InvalidInput("choose one of --add, --upsert and --delete")
    if args.delete:
        return _delete(args)
    if args.threads is not None and not args.encoder and not (args.add or args.upsert):
        print("warning: --threads sets the encoder's threads; without --encoder it is ignored", file=sys.stderr)
    store = parse_store(args.store)
    if (args.add or args.upsert) and not store:
        store = [str(p) for p in read_manifest(live_generation(Path(args.index))).get("store") or []]
    stats = ReadStats()
    records = read_records(
        args.corpus, format=args.format, id_field=args.id_field,
        text_fields=_text_fields(args.text_fields), on_error=args.on_error, stats=stats, store_fields=store,
    )
    first = next(records, None)  # read up to the first usable record before touching the index
    if first is None:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(stats.skipped.items()))
        fields = "; ".join(f"{issue} in {count}" for issue, count in sorted(stats.field_issues.items()))
        raise InvalidInput(f"{args.corpus} has no record to index ({reasons or 'it is empty'}"
                           f"{'; fields: ' + fields if fields else ''}); check --format, "
                           f"--id and --text. The index was not touched")
    records = itertools.chain([first], records)
    encoder = Encoder(args.encoder, threads=args.threads, batch_size=128) if args.encoder else None
    bar = progress_bar(None, "indexing", unit=" docs", enabled=not args.no_progress, smoothing=0.1)
    try:
        report = build_index(
            args.index, records, encoder=encoder, encoder_model=args.encoder,
            mode="add" if args.add else "upsert" if args.upsert else "replace", store=store,
            batch_size=args.batch_size,
            heap_mb=args.heap_mb, progress=bar.update,
        )
    finally:
        bar.close()
    size = directory_size(live_generation(report.path))
    summary = {
        "index": str(report.path),
        "added": report.added,
        "documents": report.total,
        "duplicates_skipped": report.duplicates,
        "replaced": report.replaced,
        "stored_fields": store,
        "lines": stats.lines,
        "skipped": dict(stats.skipped),
        "malformed_lines": stats.bad_lines,
        "field_issues": dict(stats.field_issues),
        "dense": report.dense,
        "seconds": round(report.seconds, 3),
        "docs_per_second": round(report.docs_per_second, 1),
        "size_bytes": size,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"indexed {report.added} documents into {report.path} ({report.total} in total, "
          f"{'BM25 + vectors' if report.dense else 'BM25 only'}) in {report.seconds:.1f}s, "
          f"{report.docs_per_second:.0f} docs/s, {size / 1e6:.1f} MB on disk")
    if report.duplicates:
        print(f"skipped {report.duplicates} record(s) whose id is already in the index")
    if report.replaced:
        print(f"replaced {report.replaced} document(s) whose id was already in the index")
    if store:
        print(f"stored fields: {', '.join(store)}")
    for reason, count in sorted(stats.skipped.items()):
        print(f"skipped {count} record(s): {reason}")
    for issue, count in sorted(stats.field_issues.items()):
        print(f"field {issue} in {count} record(s)")
    if stats.bad_lines:
        more = " ..." if stats.skipped["malformed JSON"] > len(stats.bad_lines) else ""
        print(f"malformed lines: {', '.join(map(str, stats.bad_lines))}{more}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    try:
        with open(args.corpus, encoding="utf-8") as handle:
            ids = [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        raise InvalidInput(f"cannot read the ids file {args.corpus}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the ids file {args.corpus} is not UTF-8 text (one id per line)") from exc
    report = delete_documents(args.index, ids)
    summary = {"index": str(report.path), "deleted": report.deleted, "not_found": report.missing,
               "documents": report.total, "seconds": round(report.seconds, 3)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"deleted {report.deleted} document(s) from {report.path} ({report.total} left) in "
              f"{report.seconds:.1f}s" + (f"; {report.missing} id(s) were not in the index" if report.missing else ""))
    return 0
