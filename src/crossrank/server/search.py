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

Request ``{"query", "index"?, "retriever"?, "candidates"?, "top_k"?, "rerank"?, "model"?,
"instruction"?, "filter"?}`` (``instruction``: an LLM reranker's prompt instruction; absent: the
model's configured default); reply ``{"query", "index", "retriever", "reranker", "instruction",
"truncation", "candidates", "hits": [{"id", "text", "fields", "rank", "first_stage_rank",
"first_stage_score", "rerank_score"}], "timings_ms": {"retrieve", "rerank", "total"}}``.
``filter`` restricts the first stage to documents whose stored fields match, e.g.
``{"price": {"lt": 40}, "color": "navy"}`` (see :mod:`crossrank.retrieval.filters`); ``fields``
holds each hit's stored fields. The rerank goes through the model's scheduler, so search requests
batch together with the other wire formats' requests.

A rebuild of a served index is picked up by the next request: each request compares the
index's ``CURRENT`` pointer with the one it opened (one ``stat``), and when a new generation
was published it opens that one and closes the old (a new generation that cannot be opened
is logged, and the old one keeps answering). ``reranker`` names are checked when the server
starts. A dense index's query encoder is a served bi-encoder of the same model when there is
one, else loaded once with the server's ``--cache-dir``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from crossrank.encode import Encoder
from crossrank.errors import CrossrankError, InvalidInput, ModelNotFound
from crossrank.extras import require
from crossrank.retrieval import layout
from crossrank.retrieval.base import RETRIEVER_KINDS, Retriever
from crossrank.retrieval.index import Index
from crossrank.retrieval.pipeline import SearchRun, retrieve
from crossrank.server.auth import require_api_key
from crossrank.server.body import ParsedBodyRoute
from crossrank.server.common import (
    Instruction,
    check_count,
    check_query,
    models_of,
    score_request,
    scoring_details,
)

log = logging.getLogger(__name__)

_KEYS = ("index", "retriever", "reranker", "candidates", "top_k", "rrf_k")
#: (model as configured, loaded encoder) of each served bi-encoder, reused for dense queries
ServedEncoders = Sequence[tuple[str, Encoder]]


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


def check_rerankers(entries: list[SearchEntry], cross_encoders: Sequence[tuple[str, str]]) -> None:
    """Each entry's ``reranker`` must be a served cross-encoder, given as (name, model) pairs."""
    names = [name for name, _ in cross_encoders]
    for entry in entries:
        if entry.reranker is None:
            continue
        if entry.reranker == "":
            if not cross_encoders:
                raise InvalidInput(f"search.{entry.name} reranks with the default cross-encoder, but the config "
                                   "serves none; add one under 'inference:' or set 'reranker: null'")
            continue
        if not any(entry.reranker in pair for pair in cross_encoders):
            raise InvalidInput(f"search.{entry.name}.reranker {entry.reranker!r} is not a cross-encoder of this "
                               f"server; known: {names} (or null for none)")


def pointer_key(root: Path) -> tuple[int, int, int] | None:
    """What identifies the index's CURRENT file: a publish replaces it with a new file."""
    try:
        stat = os.stat(root / layout.CURRENT)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass
class SearchIndex:
    """An opened index with its retrievers built once; follows rebuilds of the index."""

    entry: SearchEntry
    index: Index
    encoder: Encoder | None = None
    retrievers: dict[str, Retriever] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pointer: tuple[int, int, int] | None = None

    def build_retrievers(self, index: Index) -> dict[str, Retriever]:
        kinds = ["bm25"] + (["dense", "hybrid"] if index.dense is not None else [])
        if self.entry.retriever not in kinds:
            raise InvalidInput(f"search.{self.entry.name}: {self.entry.index} has no vectors for "
                               f"{self.entry.retriever!r} retrieval")
        return {kind: index.retriever(kind, encoder=self.encoder, rrf_k=self.entry.rrf_k) for kind in kinds}

    def retriever(self, kind: str) -> Retriever:
        if kind not in self.retrievers:
            raise InvalidInput(f"index {self.entry.name!r} offers retrievers {sorted(self.retrievers)}, not {kind!r}")
        return self.retrievers[kind]

    def retrieve(self, kind: str, query: str, k: int, filter: dict[str, Any] | None = None) -> list[Any]:
        with self.lock:  # the engines' bindings (tantivy, usearch) are not documented as safe for concurrent searches
            self.follow_rebuilds()
            return retrieve(self.retriever(kind), query, k, filter)

    def follow_rebuilds(self) -> None:
        """Open the newly published generation if there is one (call with the lock held)."""
        key = pointer_key(self.index.path)
        if key is None or key == self.pointer:
            return
        self.pointer = key  # a generation that fails to open is not retried until the next publish
        try:
            fresh = Index.open(self.index.path)
            if fresh.generation == self.index.generation:
                fresh.close()
                return
            retrievers = self.build_retrievers(fresh)
        except CrossrankError as exc:
            log.warning("index %r: a new generation was published but cannot be used (%s); still serving %s",
                        self.entry.name, exc, self.index.generation.name)
            return
        old, self.index, self.retrievers = self.index, fresh, retrievers
        old.close()
        log.info("index %r: now serving %s (%d documents)", self.entry.name, fresh.generation.name, len(fresh))


def _same_model(configured: str, recorded: str, encoder: Encoder) -> bool:
    def norm(name: str) -> str:
        name = name.removeprefix("file://")
        return str(Path(name).resolve()) if Path(name).exists() else name

    return norm(recorded) in (norm(configured), norm(encoder.name))


def _query_encoder(index: Index, served: ServedEncoders, cache_dir: str | Path | None) -> Encoder | None:
    dense = index.dense
    if dense is None:
        return None
    for configured, encoder in served:
        if _same_model(configured, str(dense["model"]), encoder):
            return encoder
    return Encoder(dense["model"], cache_dir=cache_dir)


def open_search_indexes(
    entries: list[SearchEntry], *, served: ServedEncoders = (), cache_dir: str | Path | None = None
) -> dict[str, SearchIndex]:
    """Open every configured index; a missing or corrupt one stops the server with its name.

    A dense index embeds queries with the served bi-encoder of the model it was built with
    (``served``), else with that model loaded once using ``cache_dir``.
    """
    out: dict[str, SearchIndex] = {}
    for entry in entries:
        pointer = pointer_key(Path(entry.index))
        index = Index.open(entry.index)  # opens the engines now: a later rebuild may delete this generation's files
        opened = SearchIndex(entry, index, encoder=_query_encoder(index, served, cache_dir), pointer=pointer)
        opened.retrievers = opened.build_retrievers(index)
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
    instruction: Instruction
    filter: dict[str, Any] | None = Field(
        default=None, description='conditions on stored fields, all must hold: {"color": "navy", '
        '"brand": ["Crocs", "Skechers"], "price": {"gte": 10, "lt": 40}, "details.color": {"exists": true}}')


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
    router = APIRouter(tags=["Search"], route_class=ParsedBodyRoute)

    @router.post("/search", dependencies=[Depends(require_api_key)])
    async def search(body: SearchRequest, request: Request) -> dict[str, Any]:
        """Retrieve candidates from a configured index, rerank them, return the best with timings."""
        query = check_query(body.query)
        target = _index_of(request, body.index)
        entry = target.entry
        kind = body.retriever or entry.retriever
        run = SearchRun(query, body.candidates or entry.candidates, body.top_k or entry.top_k)
        check_count(request, run.candidates, "candidates")
        target.retriever(kind)  # 422 for an unknown kind before any work
        run.retrieved(await asyncio.to_thread(target.retrieve, kind, run.query, run.candidates, body.filter))
        reranker = body.model or (entry.reranker if entry.reranker is not None else None)
        details: dict[str, Any] = {"instruction": None, "truncation": None}
        if not body.rerank or reranker is None:
            if body.instruction is not None:
                raise InvalidInput("'instruction' goes to the reranker, but this search does not rerank "
                                   "('rerank': false, or the index's reranker is null); leave it out")
            result = run.result(None, retriever=kind, reranker=None)
        else:
            model = models_of(request).cross_model(reranker or None)
            scored = await score_request(request, model, [(run.query, text) for text in run.texts],
                                       instruction=body.instruction)
            details = scoring_details(scored)
            result = run.result(scored.values, retriever=kind, reranker=model.entry.name)
        reply = result.to_dict()
        return {
            "query": reply["query"],
            "index": entry.name,
            "retriever": reply["retriever"],
            "reranker": reply["reranker"],
            **details,
            "candidates": reply["candidates"],
            "hits": reply["hits"],
            "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
        }

    return router
