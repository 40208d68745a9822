"""``crossrank eval``: what each stage buys, on a BEIR-format dataset, as a table and a report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from crossrank.cli.common import DEFAULT_MODEL, add_reranker_options, reranker_kwargs
from crossrank.errors import HubUnavailable, InvalidInput

log = logging.getLogger(__name__)

DEFAULT_STAGES = "bm25,bm25+ce"


def register(sub: Any) -> None:
    from crossrank.evaluate.runner import DEFAULT_ENCODER
    from crossrank.evaluate.stages import ALL_STAGES

    parser = sub.add_parser(
        "eval",
        help="measure retrieval stages (bm25, dense, hybrid, each +/- cross-encoder) on a BEIR dataset",
        description=(
            "Run first stages (bm25, dense, hybrid) and, for each, the cross-encoder reranking of its "
            "top N over the judged queries of a BEIR-format dataset; report nDCG@10, MRR@10, MAP@100, "
            "Recall@10/100 (trec_eval through ir-measures) and latency per query (p50/p95), with total "
            "time per stage.\n\n"
            "Writes to --out: results.json, runs/STAGE.trec (TREC run files: qid Q0 docid rank score tag) "
            "and report.html (one self-contained file with charts).\n\n"
            "examples:\n"
            "  crossrank eval --synthetic                       # a generated dataset, no download\n"
            "  crossrank eval --dataset beir/scifact --stages bm25,bm25+ce --top-n 100\n"
            "  crossrank eval --data ./nfcorpus --stages all --out results/nfcorpus"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("data").add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a BEIR-format directory: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    source.add_argument(
        "--dataset", help="beir/NAME downloads the public BEIR zip of NAME once into the cache (needs internet); "
        "a directory works too",
    )
    source.add_argument(
        "--synthetic", action="store_true",
        help="generate a small dataset with planted relevant documents into OUT/synthetic-data and use it "
        "(BM25 finds the planted documents, so its metrics are known: a quick end-to-end check)",
    )
    parser.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    parser.add_argument(
        "--stages", default=DEFAULT_STAGES,
        help=f"comma-separated stages among {', '.join(ALL_STAGES)}, or 'all'. X+ce reranks X's top N "
        "with the cross-encoder (and also reports X). dense/hybrid embed the whole corpus once "
        f"(slow on CPU for big corpora) (default: {DEFAULT_STAGES})",
    )
    parser.add_argument(
        "--top-n", type=int, default=100,
        help="first-stage candidates the cross-encoder reranks per query; cost grows linearly, recall "
        "of the reranked list is capped by the first stage's recall@N (default: 100, as in the BEIR paper)",
    )
    parser.add_argument(
        "--depth", type=int, default=100,
        help="candidates retrieved and evaluated per query (MAP@100 and Recall@100 need 100) (default: 100)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: eval-results/DATASET)")
    parser.add_argument(
        "--index", type=Path,
        help="index directory to use or build (default: OUT/index, rebuilt only when the corpus or "
        "encoder changes); an index built with `crossrank index` is used as it is",
    )
    parser.add_argument(
        "--encoder", default=DEFAULT_ENCODER,
        help=f"bi-encoder for the dense and hybrid stages (default: {DEFAULT_ENCODER})",
    )
    parser.add_argument("--rrf-k", type=int, default=60, help="reciprocal rank fusion constant of hybrid (default: 60)")
    parser.add_argument(
        "--max-queries", type=int, help="evaluate only the first N judged queries (quick runs; numbers then "
        "differ from the full split)",
    )
    parser.add_argument("--cache-dir", type=Path, help="where beir/NAME downloads go (default: $HF_HOME/crossrank/beir)")
    parser.add_argument(
        "--beir-url", help="base URL of the BEIR zips (a mirror); NAME.zip is appended (default: the BEIR authors' server)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds for downloads (default: 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.add_argument("--json", action="store_true", help="print the per-stage results as JSON instead of a table")
    parser.add_argument(
        "--strict", action="store_true",
        help="exit with status 3 when any query failed; without it a failed query is reported, counted as "
        "retrieving nothing, and the evaluation goes on (the outputs are written either way)",
    )
    add_reranker_options(parser, several=True)
    parser.set_defaults(handler=run)


def _encoder(name: str, threads: int | None) -> Any:
    from crossrank.encode import Encoder
    from crossrank.evaluate.runner import DEFAULT_ENCODER

    try:
        return Encoder(name, threads=threads)
    except HubUnavailable:
        if name != DEFAULT_ENCODER:
            raise
        from crossrank.models.synthetic import trained_minilm_dir

        print(f"note: the hub is unreachable; using the bundled copy of {DEFAULT_ENCODER}", file=sys.stderr)
        return Encoder(trained_minilm_dir(), threads=threads)


def model_labels(models: list[str]) -> list[str]:
    """Short, distinct labels for the models compared: the last path part, numbered on a clash."""
    import re

    labels: list[str] = []
    for model in models:
        parts = [p for p in re.split(r"[\\/]+", model.rstrip("/\\")) if p]
        tail = parts[-1] if parts else "model"
        if tail == "model" and len(parts) > 1:  # crossrank train writes OUT/model: name it by OUT
            tail = parts[-2]
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", tail) or "model"
        candidate, n = label, 2
        while candidate in labels:
            candidate, n = f"{label}-{n}", n + 1
        labels.append(candidate)
    return labels


def _reranker(args: argparse.Namespace, model: str, synthetic: bool) -> tuple[Any, str]:
    from crossrank.rerank import Reranker

    try:
        return Reranker(model, **reranker_kwargs(args)), ""
    except HubUnavailable as exc:
        if not (synthetic and model == DEFAULT_MODEL):
            raise
        from crossrank.cli.demo import BANNER, demo_model_dir

        print(f"note: {exc}\n\n{BANNER}\n", file=sys.stderr)
        return Reranker(demo_model_dir(), **reranker_kwargs(args)), " [LOCAL DEMO MODEL, RANDOM WEIGHTS]"


def run(args: argparse.Namespace) -> int:
    from crossrank.evaluate.beir import BEIR_URL, resolve_dataset
    from crossrank.evaluate.report import format_comparisons, format_results
    from crossrank.evaluate.runner import EvalConfig, needs_dense, run_evaluation
    from crossrank.evaluate.stages import RERANK_SUFFIX, parse_stages
    from crossrank.evaluate.synthetic import write_synthetic_beir

    stages = parse_stages(args.stages)
    for flag in ("top_n", "depth", "rrf_k", "max_queries"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise InvalidInput(f"--{flag.replace('_', '-')} must be positive")
    spec = args.data or args.dataset
    name = "synthetic" if args.synthetic else Path(str(spec).removeprefix("beir/")).name
    out = args.out or Path("eval-results") / name
    if args.synthetic:
        spec = str(write_synthetic_beir(out / "synthetic-data").path)
    config = EvalConfig(
        dataset=str(spec), out=out, split=args.split, stages=stages, depth=args.depth, top_n=args.top_n,
        index=args.index, encoder=args.encoder, max_queries=args.max_queries, rrf_k=args.rrf_k,
        progress=not args.no_progress, cache_dir=args.cache_dir, beir_url=args.beir_url or BEIR_URL,
        timeout=args.timeout,
    )
    # the dataset first (a local one is checked, a public one downloaded): models can take minutes
    resolve_dataset(config.dataset, cache_dir=config.cache_dir, base_url=config.beir_url, timeout=config.timeout,
                    progress=config.progress)
    models: list[str] = args.model or [DEFAULT_MODEL]
    rerankers: dict[str, Any] = {}
    label = ""
    if any(s.endswith(RERANK_SUFFIX) for s in stages):
        for name, model in zip(model_labels(models), models):
            rerankers[name], note = _reranker(args, model, args.synthetic)
            label = label or note
    if label:
        config.notes.append(
            "The cross-encoder is a local demo model with RANDOM WEIGHTS (the Hugging Face hub was "
            "unreachable): the +ce rows show the pipeline working, not what reranking buys."
        )
    encoder = _encoder(args.encoder, args.threads) if needs_dense(stages) else None
    outcome = run_evaluation(config, rerankers=rerankers, encoder=encoder)
    failed = _report_failures(outcome.failures)
    status = 3 if failed and args.strict else 0
    if args.json:
        print(json.dumps(outcome.rows, indent=2))
        return status
    data = outcome.payload["dataset"]
    print(f"\n{data['name']} ({data['split']}): {data['queries']} queries, {data['documents']} documents")
    if len(rerankers) == 1:
        print(f"cross-encoder: {next(iter(rerankers.values())).name}{label}, reranking the top {args.top_n}")
    elif rerankers:
        print(f"cross-encoders side by side, each reranking the top {args.top_n} of the same candidates:")
        for name, reranker in rerankers.items():
            print(f"  @{name}: {reranker.name}")
    print()
    print(format_results(outcome.rows))
    for row in outcome.rows:
        spread = row["candidates_per_query"]
        if row["reranker"] and spread["mean"] < args.top_n:
            print(f"note: {row['stage']} reranked {spread['mean']:g} candidates per query on average "
                  f"({spread['min']}-{spread['max']}), not the {args.top_n} asked for: its first stage found fewer")
    tests = format_comparisons(outcome.payload["comparisons"])
    if tests:
        print(f"\n{tests}")
    print(f"\nresults: {outcome.files['results']}\nreport:  {outcome.files['report']}")
    print(f"runs:    {out / 'runs'}/  ({outcome.payload['seconds']:.1f}s in all)")
    return status


def _report_failures(failures: dict[str, dict[str, str]], shown: int = 5) -> int:
    """Print each stage's failed queries (the first few with their reason) to stderr; how many in all."""
    for stage, queries in failures.items():
        print(f"warning: {len(queries)} quer{'y' if len(queries) == 1 else 'ies'} failed in stage {stage} "
              "(counted as retrieving nothing; listed under 'failures' in results.json):", file=sys.stderr)
        for qid, reason in list(queries.items())[:shown]:
            print(f"  {qid}: {reason}", file=sys.stderr)
    return sum(len(queries) for queries in failures.values())
