"""Index and query a synthetic 100k-document corpus; compare the embedded engines.

    python benchmarks/index_100k.py                      # everything, 100k docs (dense takes minutes)
    python benchmarks/index_100k.py --dense-docs 10000   # encode a 10k subset, extrapolate docs/s
    python benchmarks/index_100k.py --phases engines     # only the engine comparison

Phases (each runs in its own process, so each reports its own peak RSS):

* ``lexical``: ``crossrank.retrieval.build_index`` BM25-only over the corpus (docs/s, size).
* ``dense``: the same with the real all-MiniLM-L6-v2 encoder (docs/s, size).
* ``engines``: the candidate engines on the same data, outside crossrank. Lexical: tantivy
  vs bm25s (if installed) -- index time and top-100 query latency. Dense: usearch HNSW vs
  exact numpy (and hnswlib / faiss when installed) on the dense phase's real MiniLM vectors
  (random unit vectors if it did not run) -- build time, top-100 latency, recall@100
  against exact search.
* ``query``: latency p50/p99 of bm25, dense, hybrid (100 candidates) and hybrid + rerank of
  100 candidates by a random-weight cross-encoder of the ms-marco-MiniLM-L6 shape.

The corpus is product-title-like text: 6-20 words drawn from a Zipf distribution over the
~20k whole English words of the BERT uncased vocabulary (about 1.1 word pieces per word).
Queries are 2-4 words of a random document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# onnxruntime (loaded by crossrank) must be imported before usearch: the other order segfaults
# (usearch 2.26 + onnxruntime, seen on Linux x86-64)
import crossrank  # noqa: F401, E402

PHASES = ("lexical", "dense", "engines", "query")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000.0
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean())}


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


# -- data -----------------------------------------------------------------------------------
def vocabulary() -> list[str]:
    """Whole English words of the BERT uncased vocabulary (one word piece each, like real titles)."""
    from crossrank.models.synthetic import trained_minilm_dir

    words = (trained_minilm_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [w for w in words if w.isalpha() and w.isascii() and len(w) >= 3]


def make_corpus(path: Path, docs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    rng.shuffle(vocab)
    vocab_size = len(vocab)
    ranks = np.arange(1, vocab_size + 1)
    probs = 1.0 / ranks**1.07
    probs /= probs.sum()
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(docs):
            words = rng.choice(vocab_size, size=int(rng.integers(6, 21)), p=probs)
            handle.write(json.dumps({"id": f"doc{i}", "title": " ".join(vocab[w] for w in words)}) + "\n")


def read_titles(path: Path, limit: int | None = None) -> list[str]:
    titles = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            titles.append(json.loads(line)["title"])
            if limit is not None and len(titles) >= limit:
                break
    return titles


def make_queries(titles: list[str], count: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(titles), size=count, replace=False):
        words = titles[i].split()
        start = int(rng.integers(0, max(1, len(words) - 3)))
        out.append(" ".join(words[start:start + int(rng.integers(2, 5))]))
    return out


def time_queries(fn: Any, queries: list[str], warmup: int = 5) -> dict[str, float]:
    for q in queries[:warmup]:
        fn(q)
    samples = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


# -- phases ---------------------------------------------------------------------------------
def phase_engines(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import tantivy

    titles = read_titles(work / "corpus.jsonl")
    queries = make_queries(titles, args.queries)
    out: dict[str, Any] = {"lexical": {}, "dense": {}}
    # tantivy
    target = work / "engine-tantivy"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem", index_option="freq")
    builder.add_unsigned_field("ord", stored=True, indexed=False, fast=True)
    index = tantivy.Index(builder.build(), path=str(target))
    started = time.perf_counter()
    writer = index.writer(heap_size=256_000_000, num_threads=1)
    for i, title in enumerate(titles):
        doc = tantivy.Document()
        doc.add_text("text", title)
        doc.add_unsigned("ord", i)
        writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()
    build_s = time.perf_counter() - started
    index.reload()
    searcher = index.searcher()

    def tantivy_query(q: str) -> list[int]:
        hits = searcher.search(index.parse_query(q, ["text"]), 100, count=False).hits
        return [searcher.doc(a)["ord"][0] for _, a in hits]

    out["lexical"]["tantivy"] = {"index_s": build_s, "docs_per_s": len(titles) / build_s,
                                 "size_mb": dir_size_mb(target), **time_queries(tantivy_query, queries)}
    try:
        import bm25s
    except ImportError:
        out["lexical"]["bm25s"] = "not installed (pip install bm25s)"
    else:
        started = time.perf_counter()
        tokens = bm25s.tokenize(titles, stopwords=None, show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        build_s = time.perf_counter() - started
        bm25s_dir = work / "engine-bm25s"
        retriever.save(str(bm25s_dir))

        def bm25s_query(q: str) -> Any:
            return retriever.retrieve(bm25s.tokenize([q], stopwords=None, show_progress=False),
                                      k=100, show_progress=False, n_threads=1)

        out["lexical"]["bm25s"] = {"index_s": build_s, "docs_per_s": len(titles) / build_s,
                                   "size_mb": dir_size_mb(bm25s_dir), **time_queries(bm25s_query, queries),
                                   "note": "whole corpus tokenized in memory; no incremental add"}
    base, qv, out["dense_vectors"] = engine_vectors(work, titles, queries)
    n, dim = base.shape
    exact = [set(np.argpartition(-(base @ q), 100)[:100].tolist()) for q in qv]

    def recall(found: list[list[int]]) -> float:
        return float(np.mean([len(exact[i] & set(f)) / 100 for i, f in enumerate(found)]))

    def run_queries(fn: Any) -> tuple[dict[str, float], list[list[int]]]:
        found: list[list[int]] = []
        for q in qv[:5]:
            fn(q)
        samples = []
        for q in qv:
            started = time.perf_counter()
            found.append([int(x) for x in fn(q)])
            samples.append(time.perf_counter() - started)
        return percentiles(samples), found

    stats, found = run_queries(lambda q: np.argpartition(-(base @ q), 100)[:100])
    out["dense"]["numpy exact"] = {"index_s": 0.0, **stats, "recall@100": recall(found),
                                   "size_mb": base.nbytes / 1e6}
    from usearch.index import Index as UIndex

    started = time.perf_counter()
    uindex = UIndex(ndim=dim, metric="cos", dtype="f32", connectivity=16, expansion_add=128, expansion_search=256)
    uindex.add(np.arange(n, dtype=np.uint64), base)
    build_s = time.perf_counter() - started
    uindex.save(str(work / "engine.usearch"))
    stats, found = run_queries(lambda q: uindex.search(q, 100).keys)
    out["dense"]["usearch HNSW"] = {"index_s": build_s, **stats, "recall@100": recall(found),
                                    "size_mb": (work / "engine.usearch").stat().st_size / 1e6}
    try:
        import hnswlib
    except ImportError:
        out["dense"]["hnswlib"] = "not installed"
    else:
        started = time.perf_counter()
        hindex = hnswlib.Index(space="cosine", dim=dim)
        hindex.init_index(max_elements=n, ef_construction=128, M=16)
        hindex.add_items(base, np.arange(n))
        hindex.set_ef(128)
        build_s = time.perf_counter() - started
        stats, found = run_queries(lambda q: hindex.knn_query(q, k=100)[0][0])
        out["dense"]["hnswlib"] = {"index_s": build_s, **stats, "recall@100": recall(found)}
    try:
        import faiss
    except ImportError:
        out["dense"]["faiss"] = "not installed"
    else:
        started = time.perf_counter()
        findex = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        findex.add(base)
        build_s = time.perf_counter() - started
        stats, found = run_queries(lambda q: findex.search(q[None, :], 100)[1][0])
        out["dense"]["faiss HNSW"] = {"index_s": build_s, **stats, "recall@100": recall(found)}
    return out


def engine_vectors(work: Path, titles: list[str], queries: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """The corpus's real all-MiniLM-L6-v2 vectors when the dense phase has run, else random ones.

    Random high-dimensional vectors have no neighbourhood structure and are the worst case
    for any graph index; real embeddings are what the engines will hold.
    """
    built = sorted((work / "dense.idx").glob("gen-*/vectors.usearch"))
    if built:
        from usearch.index import Index as UIndex

        from crossrank import Encoder
        from crossrank.models.synthetic import trained_minilm_dir

        stored = UIndex.restore(str(built[-1]), view=True)
        if stored is None:
            raise SystemExit(f"{built[-1]} could not be read as a usearch index; delete it and rerun")
        base = np.array(stored.get(np.arange(len(stored), dtype=np.uint64)), dtype=np.float32, copy=True)
        del stored  # a view over a memory-mapped file: copy before it is unmapped
        qv = Encoder(trained_minilm_dir()).embed(queries)
        return base, qv, f"all-MiniLM-L6-v2 embeddings of the corpus ({len(base)}) and of the queries"
    rng = np.random.default_rng(0)
    base = rng.standard_normal((len(titles), 384), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    picks = rng.choice(len(titles), size=len(queries), replace=False)
    qv = base[picks] + 0.6 * rng.standard_normal((len(queries), 384), dtype=np.float32) / np.sqrt(384)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    return base, qv, "random unit vectors (run the dense phase first for real embeddings)"


def phase_build(work: Path, args: argparse.Namespace, dense: bool) -> dict[str, Any]:
    from crossrank import Encoder
    from crossrank.models.synthetic import trained_minilm_dir
    from crossrank.retrieval import build_index, read_records

    target = work / ("dense.idx" if dense else "lexical.idx")
    shutil.rmtree(target, ignore_errors=True)
    encoder = Encoder(trained_minilm_dir(), batch_size=128) if dense else None
    limit = args.dense_docs if dense else args.docs

    def records() -> Any:
        for i, record in enumerate(read_records(work / "corpus.jsonl", id_field="id", text_fields=["title"])):
            if i >= limit:
                return
            yield record

    started = time.perf_counter()
    report = build_index(target, records(), encoder=encoder, encoder_model=str(trained_minilm_dir()) if dense else None)
    seconds = time.perf_counter() - started
    result = {"docs": report.added, "seconds": seconds, "docs_per_s": report.added / seconds,
              "size_mb": dir_size_mb(target)}
    if dense and report.added < args.docs:
        result["extrapolated_100k_s"] = args.docs / result["docs_per_s"]
    return result


def phase_query(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from crossrank import Reranker
    from crossrank.retrieval import Index, Pipeline

    titles = read_titles(work / "corpus.jsonl", limit=args.dense_docs)
    queries = make_queries(titles, args.queries)
    out: dict[str, Any] = {}
    path = work / "dense.idx" if (work / "dense.idx").exists() else work / "lexical.idx"
    index = Index.open(path)
    out["index"] = {"path": path.name, "docs": len(index)}
    for kind in ("bm25", "dense", "hybrid"):
        if kind != "bm25" and index.dense is None:
            continue
        retriever = index.retriever(kind)
        out[kind] = time_queries(lambda q, r=retriever: r.retrieve(q, 100), queries)
    reranker = Reranker(prepare_reranker(work), cache_dir=work / "cache")
    kind = "hybrid" if index.dense is not None else "bm25"
    pipeline = Pipeline(index.retriever(kind), reranker)
    stages: list[dict[str, float]] = []

    def searched(q: str) -> None:
        stages.append(pipeline.search(q, candidates=100, top_k=10).timings_ms)

    rerank_queries = queries[: args.rerank_queries]
    out[f"{kind}+rerank100"] = time_queries(searched, rerank_queries, warmup=2)
    out[f"{kind}+rerank100"]["rerank_p50_ms"] = float(np.percentile([s["rerank"] for s in stages[2:]], 50))
    return out


def prepare_reranker(work: Path) -> Path:
    """A random-weight cross-encoder of the ms-marco-MiniLM-L6 shape, exported to ONNX once.

    Called by the parent process first, so that the query phase's peak RSS does not include
    torch (used only to build and export the model).
    """
    from crossrank import Reranker
    from crossrank.models.synthetic import build_random_model

    model_dir = work / "ms-marco-minilm-l6-random"
    if not (model_dir / "config.json").exists():
        build_random_model(model_dir, layers=6)
    Reranker(model_dir, cache_dir=work / "cache")
    return model_dir


def run_phase(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if name == "engines":
        result = phase_engines(work, args)
    elif name == "lexical":
        result = phase_build(work, args, dense=False)
    elif name == "dense":
        result = phase_build(work, args, dense=True)
    else:
        result = phase_query(work, args)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# -- report ---------------------------------------------------------------------------------
def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"# Synthetic corpus: {args.docs} documents, {args.queries} queries, top-100", ""]
    engines = results.get("engines")
    if engines:
        lines += ["## Engines (outside crossrank)", "",
                  "| engine | index s | docs/s | query p50 ms | query p99 ms | recall@100 | size MB |",
                  "|---|---|---|---|---|---|---|"]
        lines.insert(-2, f"dense engines on {engines.get('dense_vectors', 'random vectors')}\n")
        for group in ("lexical", "dense"):
            for name, r in engines[group].items():
                if isinstance(r, str):
                    lines.append(f"| {name} | {r} | | | | | |")
                    continue
                docs_s = f"{args.docs / r['index_s']:.0f}" if r["index_s"] else "-"
                lines.append(f"| {name} | {r['index_s']:.2f} | {docs_s} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                             f"| {r.get('recall@100', '-') if group == 'dense' else '-'} | {r.get('size_mb', 0):.1f} |")
        lines += [f"\npeak RSS of the engine phase: {engines['peak_rss_mb']:.0f} MB", ""]
    for name in ("lexical", "dense"):
        r = results.get(name)
        if r:
            extra = f", 100k extrapolated: {r['extrapolated_100k_s']:.0f} s" if "extrapolated_100k_s" in r else ""
            lines.append(f"- crossrank index ({name}): {r['docs']} docs in {r['seconds']:.1f} s = "
                         f"{r['docs_per_s']:.0f} docs/s, {r['size_mb']:.1f} MB on disk, peak RSS "
                         f"{r['peak_rss_mb']:.0f} MB{extra}")
    q = results.get("query")
    if q:
        lines += ["", f"## Query latency ({q['index']['docs']} docs, 100 candidates)", "",
                  "| retriever | p50 ms | p99 ms | mean ms |", "|---|---|---|---|"]
        for name, r in q.items():
            if isinstance(r, dict) and "p50_ms" in r:
                lines.append(f"| {name} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_ms']:.1f} |")
        lines.append(f"\npeak RSS of the query phase: {q['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="corpus size (default: 100000)")
    parser.add_argument("--dense-docs", type=int, help="documents to embed for the dense index (default: --docs)")
    parser.add_argument("--queries", type=int, default=200, help="queries per latency measurement (default: 200)")
    parser.add_argument("--rerank-queries", type=int, default=30,
                        help="queries for the rerank-of-100 latency; each costs 100 pairs (default: 30)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {PHASES}")
    parser.add_argument("--work", help="working directory (default: a temporary one, removed at the end)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dense_docs = args.dense_docs or args.docs
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="crossrank-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.phase:  # child process: one phase, JSON on stdout
        print(json.dumps(run_phase(args.phase, work, args)))
        return 0
    if not (work / "corpus.jsonl").exists() or sum(1 for _ in open(work / "corpus.jsonl")) != args.docs:
        make_corpus(work / "corpus.jsonl", args.docs)
    results: dict[str, Any] = {}
    for name in [p for p in args.phases.split(",") if p]:
        if name not in PHASES:
            parser.error(f"unknown phase {name!r}")
        print(f"running phase {name}...", file=sys.stderr, flush=True)
        if name == "query":
            prepare_reranker(work)
        command = [sys.executable, __file__, "--phase", name, "--work", str(work), "--docs", str(args.docs),
                   "--dense-docs", str(args.dense_docs), "--queries", str(args.queries),
                   "--rerank-queries", str(args.rerank_queries)]
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=os.environ)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
