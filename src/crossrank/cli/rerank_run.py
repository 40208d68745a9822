"""``crossrank rerank-run``: rerank the top N of an existing TREC run file with a cross-encoder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossrank.cli.common import add_reranker_options, reranker_kwargs

if TYPE_CHECKING:
    from crossrank.evaluate.rerank_run import RerankRunReport


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "rerank-run",
        help="rerank a TREC run file (Anserini, Pyserini, Elasticsearch...) with a cross-encoder",
        description=(
            "Read a TREC run (qid Q0 docid rank score tag), score the top N documents of each query "
            "against its query with a cross-encoder, and write the reranked run in the same format, "
            "ready for trec_eval, ir-measures or `crossrank eval`-style tools.\n\n"
            "Streaming: the run is read one query at a time (its lines must be grouped by query, as "
            "search engines write them), and only the texts of documents in the top N are kept, on "
            "disk. Resumable: run it again with the same --out after an interruption and the queries "
            "already written are skipped.\n\n"
            "example:\n"
            "  crossrank rerank-run --run bm25.trec --corpus scifact/corpus.jsonl \\\n"
            "      --queries scifact/queries.jsonl --top-n 100 --out bm25+ce.trec"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True, type=Path, help="input TREC run file")
    parser.add_argument(
        "--corpus", required=True, type=Path,
        help="the documents: BEIR corpus.jsonl (_id, title, text), JSONL with id/text, or text lines",
    )
    parser.add_argument(
        "--corpus-format", choices=("auto", "jsonl", "beir", "text"), default="auto",
        help="auto: a file named corpus.jsonl is BEIR, .jsonl is JSONL with 'id'/'text' (default: auto)",
    )
    parser.add_argument(
        "--queries", required=True, type=Path, help="BEIR queries.jsonl (_id, text) or a TSV file 'qid<TAB>text'"
    )
    parser.add_argument("--out", required=True, type=Path, help="output TREC run file")
    parser.add_argument(
        "--top-n", type=int, default=100,
        help="documents reranked per query; cost is linear in N (default: 100)",
    )
    parser.add_argument(
        "--keep-rest", action="store_true",
        help="also write the documents below the top N, in their original order and below the reranked "
        "ones, so that deep metrics (Recall@1000) stay comparable (default: only the top N)",
    )
    parser.add_argument("--tag", help="run tag in the last column (default: crossrank-MODEL)")
    parser.add_argument(
        "--restart", action="store_true", help="overwrite --out instead of resuming where it stopped"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.add_argument(
        "--strict", action="store_true",
        help="exit with status 3 when any query failed; without it failed queries are reported and left out "
        "(run again with the same --out to retry just them)",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine", choices=("local", "ray", "spark"), default="local",
        help="local: this process; ray: a pool of Ray Data actors (pip install 'crossrank[ray]'); "
        "spark: a Spark job (pip install 'crossrank[spark]', needs Java 17). Same output file (default: local)",
    )
    engine.add_argument(
        "--address",
        help="ray: the cluster to join (ray://host:10001 or host:6379; default: start a local one); "
        "spark: the master URL (default: local[WORKERS])",
    )
    engine.add_argument(
        "--workers", type=int, default=2,
        help="ray: actors, each with one model and --threads (default 1) CPU threads; spark: partitions "
        "scored at once on a local master (default: 2)",
    )
    engine.add_argument(
        "--spill-dir", type=Path,
        help="ray/spark: where the pairs are written as Parquet for the workers to read, so this process "
        "never holds them all (default: beside --out; removed at the end). With spark on a cluster of several "
        "machines, give a directory every executor can read (a shared file system)",
    )
    add_reranker_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from crossrank.errors import InvalidInput
    from crossrank.evaluate.rerank_run import rerank_run
    from crossrank.rerank import Reranker

    if args.top_n < 1:
        raise InvalidInput("--top-n must be positive")
    if not args.run.is_file():
        raise InvalidInput(f"run file not found: {args.run}")
    if args.engine == "local":
        reranker = Reranker(args.model, **reranker_kwargs(args))
        report = rerank_run(
            args.run, args.corpus, args.queries, args.out, reranker, top_n=args.top_n, keep_rest=args.keep_rest,
            resume=not args.restart, tag=args.tag, corpus_format=args.corpus_format, progress=not args.no_progress,
        )
    else:
        report = _on_engine(args)
    print(
        f"{args.out}: reranked {report.reranked} queries ({report.pairs} pairs) in {report.seconds:.1f}s"
        + (f"; {report.skipped} already done" if report.skipped else ""),
        file=sys.stderr,
    )
    if report.missing_documents:
        print(f"warning: {report.missing_documents} documents of the run are not in the corpus (left out)",
              file=sys.stderr)
    if report.no_query_text:
        print(f"warning: {report.no_query_text} queries have no text in {args.queries} (left out)", file=sys.stderr)
    if report.failures:
        print(f"warning: {len(report.failures)} queries failed and were left out (run again with the same --out "
              "to retry them):", file=sys.stderr)
        for qid, reason in list(report.failures.items())[:5]:
            print(f"  {qid}: {reason}", file=sys.stderr)
    return 3 if report.failures and args.strict else 0


def _on_engine(args: argparse.Namespace) -> RerankRunReport:
    from crossrank.batch.run import Job
    from crossrank.batch.scorer import RerankerSpec, model_path
    from crossrank.errors import InvalidInput

    if args.workers < 1:
        raise InvalidInput("--workers must be at least 1")
    job = Job(args.run, args.corpus, args.queries, args.out, top_n=args.top_n, keep_rest=args.keep_rest,
              resume=not args.restart, tag=args.tag, corpus_format=args.corpus_format, spill_dir=args.spill_dir)
    # the ONNX export is made here, before the workers start; they find it in the same cache
    spec = RerankerSpec(model_path(args.model), reranker_kwargs(args))
    if args.engine == "ray":
        from crossrank.batch.ray_data import rerank_run_ray

        return rerank_run_ray(job, spec, address=args.address, workers=args.workers)
    from crossrank.batch.spark import rerank_run_spark

    return rerank_run_spark(job, spec, master=args.address, workers=args.workers)
