"""``POST /search``: retrieve from a configured index and rerank with a served cross-encoder.

Indexes are named in the server's YAML config, next to ``inference:``::

    search:
      products:
        index: /data/products.idx     # built with `crossrank index`
        retriever: hybrid             # bm25 | dense | hybrid (default: bm25)
        reranker: msmarco             # a cross-encoder of `inference:` (default: the first; null: none)
        candidates: 100               # first-stage depth (default: 100)
        top_k: 10                     # results returned (default: 10)
        rrf_k: 60                     # hybrid fusion constant

Request ``{"query", "index"?, "retriever"?, "candidates"?, "top_k"?, "rerank"?}``; reply
``{"query", "index", "retriever", "reranker", "candidates", "hits": [{"id", "text", "rank",
"first_stage_rank", "first_stage_score", "rerank_score"}], "timings_ms": {"retrieve",
"rerank", "total"}}``. The rerank goes through the model's scheduler, so search requests
batch together with the other wire formats' requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from crossrank.errors import InvalidInput, ModelNotFound
from crossrank.extras import require
from crossrank.retrieval.base import RETRIEVER_KINDS, Retriever
from crossrank.retrieval.index import Index
from crossrank.retrieval.pipeline import first_stage_hits, hits_from_scores
from crossrank.server.auth import require_api_key
from crossrank.server.common import check_count, check_query, models_of, parse, read_json, score_pairs

_KEYS = ("index", "retriever", "reranker", "candidates", "top_k", "rrf_k")


@dataclass(frozen=True)
class SearchEntry:
    """One ``search:`` entry of the config."""

    name: str
    index: str
    retriever: str = "bm25"
    reranker: str | None = ""  #: "" = the server's default cross-encoder, None = no reranking
    candidates: int = 100
    top_k: int = 10
    rrf_k: int = 60


def read_search_config(path: str | Path) -> list[SearchEntry]:
    """The ``search:`` entries of a server config file (none when the section is absent)."""
    yaml = require("yaml", "server", "Reading the server's YAML config")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read config {path}: {exc}") from exc
    section = data.get("search") if isinstance(data, dict) else None
    if section is None:
        return []
    if not isinstance(section, dict):
        raise InvalidInput(f"config {path}: 'search' must map index names to settings")
    return [parse_entry(str(name), raw) for name, raw in section.items()]


def parse_entry(name: str, raw: Any) -> SearchEntry:
    if isinstance(raw, str):
        raw = {"index": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("index"), str):
        raise InvalidInput(f"search.{name} needs 'index: PATH'")
    unknown = set(raw) - set(_KEYS)
    if unknown:
        raise InvalidInput(f"search.{name} has unknown keys {sorted(unknown)}; known: {list(_KEYS)}")
    entry = SearchEntry(name=name, **{k: raw[k] for k in raw if k != "reranker"},
                        reranker=raw.get("reranker", ""))
    for key in ("candidates", "top_k", "rrf_k"):
        value = getattr(entry, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "rrf_k" else 1):
            raise InvalidInput(f"search.{name}.{key} must be a positive integer")
    if entry.retriever not in RETRIEVER_KINDS:
        raise InvalidInput(f"search.{name}.retriever must be one of {RETRIEVER_KINDS}")
    return entry


@dataclass
class SearchIndex:
    """An opened index with its retrievers built once (the dense ones load the encoder)."""

    entry: SearchEntry
    index: Index
    retrievers: dict[str, Retriever] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def retriever(self, kind: str) -> Retriever:
        if kind not in self.retrievers:
            raise InvalidInput(f"index {self.entry.name!r} offers retrievers {sorted(self.retrievers)}, not {kind!r}")
        return self.retrievers[kind]

    def retrieve(self, kind: str, query: str, k: int) -> list[Any]:
        with self.lock:  # the engines' bindings (tantivy, usearch) are not documented as safe for concurrent searches
            return self.retriever(kind).retrieve(query, k)


def open_search_indexes(entries: list[SearchEntry]) -> dict[str, SearchIndex]:
    """Open every configured index; a missing or corrupt one stops the server with its name."""
    out: dict[str, SearchIndex] = {}
    for entry in entries:
        index = Index.open(entry.index)
        kinds = ["bm25"] + (["dense", "hybrid"] if index.dense is not None else [])
        if entry.retriever not in kinds:
            raise InvalidInput(f"search.{entry.name}: {entry.index} has no vectors for {entry.retriever!r} retrieval")
        index.lexical()  # open the engines now: a later rebuild may delete this generation's files
        if index.dense is not None:
            index.vectors()
        opened = SearchIndex(entry, index)
        for kind in kinds:
            opened.retrievers[kind] = index.retriever(kind, rrf_k=entry.rrf_k)
        out[entry.name] = opened
    return out


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    index: str | None = None
    retriever: str | None = None
    candidates: int | None = Field(default=None, ge=1)
    top_k: int | None = Field(default=None, ge=1)
    rerank: bool = True
    model: str | None = None


def _index_of(request: Request, name: str | None) -> SearchIndex:
    indexes: dict[str, SearchIndex] = getattr(request.app.state, "search", None) or {}
    if not indexes:
        raise ModelNotFound("no search index is configured on this server (add a 'search:' section to the config)")
    if name is None:
        return next(iter(indexes.values()))
    if name not in indexes:
        raise ModelNotFound(f"index {name!r} is not configured; indexes: {sorted(indexes)}")
    return indexes[name]


def build_router() -> APIRouter:
    router = APIRouter(tags=["Search"])

    @router.post("/search", dependencies=[Depends(require_api_key)])
    async def search(request: Request) -> dict[str, Any]:
        """Retrieve candidates from a configured index, rerank them, return the best with timings."""
        body = parse(SearchRequest, await read_json(request))
        started = time.perf_counter()
        query = check_query(body.query)
        target = _index_of(request, body.index)
        entry = target.entry
        kind = body.retriever or entry.retriever
        candidates = body.candidates or entry.candidates
        top_k = body.top_k or entry.top_k
        check_count(request, candidates, "candidates")
        target.retriever(kind)  # 422 for an unknown kind before any work
        found = await asyncio.to_thread(target.retrieve, kind, query, candidates)
        retrieved = time.perf_counter()
        timings = {"retrieve": (retrieved - started) * 1000.0}
        reranker = body.model or (entry.reranker if entry.reranker is not None else None)
        if not body.rerank or reranker is None or not found:
            hits = first_stage_hits(found, top_k)
            reranker_name = None
        else:
            model = models_of(request).cross_model(reranker or None)
            result = await score_pairs(request, model, [(query, c.text) for c in found])
            hits = hits_from_scores(found, result.values, top_k)
            reranker_name = model.entry.name
            timings["rerank"] = (time.perf_counter() - retrieved) * 1000.0
        timings["total"] = (time.perf_counter() - started) * 1000.0
        return {
            "query": body.query,
            "index": entry.name,
            "retriever": kind,
            "reranker": reranker_name,
            "candidates": len(found),
            "hits": [hit.to_dict() for hit in hits],
            "timings_ms": {k: round(v, 3) for k, v in timings.items()},
        }

    return router
