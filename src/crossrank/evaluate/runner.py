"""``crossrank eval`` as a library call: dataset -> index -> stages -> metrics -> outputs.

>>> outcome = run_evaluation(EvalConfig("beir/scifact", Path("out")), reranker=Reranker(MODEL))  # doctest: +SKIP
>>> outcome.rows[0]["metrics"]["nDCG@10"]  # doctest: +SKIP

The index is built with the embedded index's own builder (BM25 always; vectors when a dense
or hybrid stage is selected) and reused on the next run when the corpus and the encoder are
unchanged. Outputs go to ``config.out``: ``results.json``, ``runs/STAGE.trec`` and
``report.html``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossrank import __version__
from crossrank.encode import Encoder
from crossrank.errors import InvalidInput
from crossrank.evaluate.beir import BEIR_URL, BeirDataset, resolve_dataset
from crossrank.evaluate.metrics import Evaluation, evaluate
from crossrank.evaluate.report import comparisons, render_html, stage_summaries, write_results_json
from crossrank.evaluate.stages import RERANK_SUFFIX, Scorer, StageRun, run_stages, stages_to_run
from crossrank.evaluate.trec import write_run
from crossrank.progress import bar
from crossrank.retrieval import Index, build_index, layout
from crossrank.retrieval.base import Retriever

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
INDEX_SOURCE = "source.json"  #: next to the index: what it was built from


@dataclass
class EvalConfig:
    dataset: str  #: a BEIR directory or ``beir/NAME``
    out: Path  #: output directory
    split: str = "test"
    stages: list[str] = field(default_factory=lambda: ["bm25", "bm25+ce"])
    depth: int = 100  #: candidates retrieved (and evaluated) per query
    top_n: int = 100  #: candidates reranked per query
    index: Path | None = None  #: reuse/build the index here (default: OUT/index)
    encoder: str = DEFAULT_ENCODER  #: bi-encoder for dense and hybrid stages
    max_queries: int | None = None  #: evaluate only the first N judged queries
    rrf_k: int = 60
    progress: bool = True
    cache_dir: Path | None = None  #: where beir/NAME downloads go
    beir_url: str = BEIR_URL
    timeout: float = 30.0
    notes: list[str] = field(default_factory=list)  #: caveats shown at the top of the report


@dataclass
class EvalOutcome:
    payload: dict[str, Any]
    runs: dict[str, StageRun]
    evaluations: dict[str, Evaluation]
    files: dict[str, Path]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.payload["stages"])

    @property
    def failures(self) -> dict[str, dict[str, str]]:
        """Stage -> query id -> why it failed (those queries count as retrieving nothing)."""
        return dict(self.payload.get("failures", {}))


def needs_dense(stages: list[str]) -> bool:
    return any(s.removesuffix(RERANK_SUFFIX) in ("dense", "hybrid") for s in stages)


def prepare_index(
    data: BeirDataset,
    path: Path,
    *,
    encoder: Encoder | None,
    encoder_name: str | None,
    progress: bool,
    managed: bool = True,
) -> tuple[Index, dict[str, Any]]:
    """Open the index at ``path`` if it was built from this corpus (and encoder); else build it.

    ``managed=False`` (an index the user named) uses an existing index that crossrank eval
    did not build as it is.
    """
    stat = data.corpus_path.stat()
    source = {
        "corpus": str(data.corpus_path.resolve()),
        "size": stat.st_size,
        "mtime": stat.st_mtime,
        "encoder": encoder_name if encoder is not None else None,
    }
    marker = path.parent / f"{path.name}.{INDEX_SOURCE}"
    if (path / layout.CURRENT).is_file():
        if not marker.is_file() and not managed:
            log.info("using the index at %s as it is (not built by crossrank eval)", path)
            return Index.open(path), {"reused": True, "seconds": 0.0}
        try:
            recorded = json.loads(marker.read_text()) if marker.is_file() else {}
        except (ValueError, RecursionError):
            recorded = {}
        if not isinstance(recorded, dict):
            recorded = {}
        same_corpus = all(recorded.get(k) == source[k] for k in ("corpus", "size", "mtime"))
        if same_corpus and source["encoder"] in (None, recorded.get("encoder")):
            log.info("reusing the index at %s", path)
            return Index.open(path), {"reused": True, "seconds": 0.0}
    total = data.corpus_size()
    progress_bar = bar(total, "indexing", unit=" docs", enabled=progress)
    try:
        report = build_index(
            path, data.records(), encoder=encoder, encoder_model=encoder_name, progress=progress_bar.update
        )
    finally:
        progress_bar.close()
    marker.write_text(json.dumps(source))
    return Index.open(path), {"reused": False, "seconds": round(report.seconds, 3), "documents": report.total}


def run_evaluation(
    config: EvalConfig, *, reranker: Scorer | None = None, encoder: Encoder | None = None,
    rerankers: Mapping[str, Scorer] | None = None,
) -> EvalOutcome:
    """Run the configured stages on the dataset and write every output.

    ``rerankers`` (label -> scorer) compares several cross-encoders side by side: each
    reranked stage runs once per model (``bm25+ce@LABEL``) on the same candidates.
    """
    if rerankers and reranker is not None:
        raise InvalidInput("pass either one reranker or several rerankers, not both")
    if rerankers and len(rerankers) == 1:
        reranker, rerankers = next(iter(rerankers.values())), None
    started = time.perf_counter()
    stages = stages_to_run(config.stages)
    if any(s.endswith(RERANK_SUFFIX) for s in stages) and reranker is None and not rerankers:
        raise InvalidInput("the +ce stages need a cross-encoder (reranker)")
    data = resolve_dataset(
        config.dataset, cache_dir=config.cache_dir, base_url=config.beir_url,
        timeout=config.timeout, progress=config.progress,
    )
    qrels = data.qrels(config.split)
    if config.max_queries is not None:
        qrels = dict(list(qrels.items())[: config.max_queries])
    queries = data.queries(qrels)

    dense = needs_dense(stages)
    if dense and encoder is None:
        encoder = Encoder(config.encoder)
    encoder_name = config.encoder if dense else None
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    index, index_info = prepare_index(
        data, config.index or out / "index", encoder=encoder if dense else None,
        encoder_name=encoder_name, progress=config.progress, managed=config.index is None,
    )
    retrievers: dict[str, Retriever] = {}
    for kind in {s.removesuffix(RERANK_SUFFIX) for s in stages}:
        retrievers[kind] = index.retriever(kind, encoder=encoder if kind != "bm25" else None, rrf_k=config.rrf_k)

    runs = run_stages(
        stages, retrievers, queries, reranker=reranker, rerankers=rerankers, depth=config.depth, top_n=config.top_n,
        progress=config.progress,
    )
    evaluations = {name: evaluate(qrels, run.ranked_ids()) for name, run in runs.items()}

    files: dict[str, Path] = {}
    for name, run in runs.items():
        files[f"run:{name}"] = path = out / "runs" / f"{name}.trec"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_run(path, run.run.items(), tag=f"crossrank-{name}")
    rows = stage_summaries(runs, evaluations)
    for row in rows:
        row["run_file"] = str(files[f"run:{row['stage']}"].relative_to(out))
    payload: dict[str, Any] = {
        "dataset": {
            "name": data.name, "path": str(data.root), "split": config.split,
            "queries": len(qrels), "documents": len(index),
        },
        "config": {
            "stages": stages, "depth": config.depth, "top_n": config.top_n,
            "reranker": getattr(reranker, "name", None) if reranker is not None else None,
            "rerankers": {label: getattr(r, "name", label) for label, r in (rerankers or {}).items()},
            "encoder": encoder_name, "rrf_k": config.rrf_k,
            "bm25": index.manifest.get("lexical"),
        },
        "notes": list(config.notes),
        "index": {"path": str(index.path), **index_info},
        "stages": rows,
        "failures": {name: dict(run.failures) for name, run in runs.items() if run.failures},
        "per_query": {name: e.per_query for name, e in evaluations.items()},
        "candidates_per_query": {name: dict(run.candidates) for name, run in runs.items()},
        "comparisons": comparisons(evaluations),
        "environment": {
            "crossrank": __version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    payload["seconds"] = round(time.perf_counter() - started, 3)
    files["results"] = out / "results.json"
    write_results_json(files["results"], payload)
    files["report"] = out / "report.html"
    files["report"].write_text(render_html(payload, runs, evaluations), encoding="utf-8")
    return EvalOutcome(payload, runs, evaluations, files)
