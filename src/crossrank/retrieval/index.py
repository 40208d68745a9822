"""The embedded index: open it, and get BM25, dense or hybrid retrievers over it.

>>> index = Index.open("products.idx")  # doctest: +SKIP
>>> index.retriever("hybrid").retrieve("crocs for kids", 100)[0].id  # doctest: +SKIP
'B07JG9TFSB'
>>> hit = index.search("crocs for kids", 10, filter={"price": {"lt": 40}, "color": "navy"})[0]  # doctest: +SKIP
>>> hit.fields["price"]  # doctest: +SKIP
29.99

Built and searched here (BM25 only: no model needed):

>>> import tempfile
>>> from crossrank.retrieval import Record, build_index
>>> path = f"{tempfile.mkdtemp()}/shoes.idx"
>>> report = build_index(path, [Record("a", "leather boots"), Record("b", "crocs clog for kids")])
>>> [c.id for c in Index.open(path).retriever("bm25").retrieve("crocs for kids", 10)]
['b']
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.encode import Encoder
from crossrank.errors import BadIndex, CrossrankError, IndexCorrupt, IndexUnusable, InvalidInput
from crossrank.extras import require
from crossrank.retrieval import layout
from crossrank.retrieval.base import RETRIEVER_KINDS, Candidate, Retriever
from crossrank.retrieval.build import (
    ORD_FIELD,
    TEXT_FIELD,
    BuildReport,
    build_index,
    delete_documents,
    lexical_analyzer,
)
from crossrank.retrieval.docstore import DocStore, read_deleted
from crossrank.retrieval.filtered import filtered_dense
from crossrank.retrieval.filters import filter_query, normalize_filter
from crossrank.retrieval.fusion import reciprocal_rank_fusion
from crossrank.retrieval.records import Record

log = logging.getLogger(__name__)

#: HNSW candidate list size at query time. usearch widens it to k for a search of k
#: neighbours by itself, so a large k never needs (and must never change) this shared setting
EXPANSION_SEARCH = 256
#: tries to open the live generation when rebuilds keep replacing it meanwhile
OPEN_ATTEMPTS = 3


def check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInput("k must be a positive integer")
    return k


class Index:
    """A published index directory: stored documents, BM25 (tantivy), vectors (usearch).

    :meth:`open` opens every engine at once, so a damaged index fails there with
    :class:`BadIndex` naming it, and an open index keeps answering from its generation
    (its files stay open) even after a rebuild has published a newer one and deleted it.
    """

    def __init__(self, root: Path, generation: Path, manifest: dict[str, Any]) -> None:
        self.path = root
        self.generation = generation
        self.manifest = manifest
        layout.check_files(root, generation, manifest)
        try:
            self.docs = DocStore(generation)
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"{root}: stored documents are unreadable ({exc}); the index is corrupt") from exc
        if len(self.docs) != manifest["documents"]:
            self.docs.close()
            raise IndexCorrupt(f"{root}: the stored documents ({len(self.docs)}) do not match the manifest "
                               f"({manifest['documents']}); the index is corrupt")
        try:
            self.deleted = len(read_deleted(generation))
        except (OSError, ValueError) as exc:
            self.docs.close()
            raise IndexCorrupt(f"{root}: {exc}; the index is corrupt") from exc
        if self.deleted != manifest.get("deleted", 0):
            self.docs.close()
            raise IndexCorrupt(f"{root}: {self.deleted} deleted documents, the manifest says {manifest.get('deleted')}; "
                               "the index is corrupt")
        #: the fields kept with each document (``crossrank index --store``), which filters may name
        self.stored_fields: list[str] = [str(p) for p in manifest.get("store") or []]
        self._lexical: Any = None
        self._vectors: Any = None
        self._encoder: Encoder | None = None
        self._analyzer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> Index:
        """Open the live generation of the index at ``path``; :class:`BadIndex` when unusable.

        A reader that loses a race with a rebuild (the generation it resolved is deleted while
        it opens it) opens the newly published one instead: it sees the old or the new index,
        never an error.
        """
        root = Path(path)
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            generation = layout.live_generation(root)
            try:
                index = cls(root, generation, layout.read_manifest(generation))
                index.lexical()
                if index.dense is not None:
                    index.vectors()
                return index
            except BadIndex:
                if attempt == OPEN_ATTEMPTS or not layout.republished(root, generation.name):
                    raise
                log.info("%s was republished while being opened; opening the new generation", root)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release the files of this generation (searching afterwards is an error)."""
        with self._lock:
            self.docs.close()
            self._lexical = self._vectors = None

    def __len__(self) -> int:
        """Live documents (deleted and replaced ones not counted)."""
        return len(self.docs) - self.deleted

    @property
    def dense(self) -> dict[str, Any] | None:
        """The encoder description recorded at build time, or ``None`` for a BM25-only index."""
        value = self.manifest.get("dense")
        return dict(value) if isinstance(value, dict) else None

    def retriever(self, kind: str = "bm25", encoder: Encoder | None = None, rrf_k: int = 60) -> Retriever:
        """A retriever over this index.

        ``bm25``: lexical; ``dense``: cosine (or dot) over the vectors, embedding the query
        with ``encoder`` (default: the encoder recorded in the index); ``hybrid``: both,
        fused with reciprocal rank fusion (``rrf_k``). An encoder whose dimension differs
        from the index's is refused.
        """
        if kind not in RETRIEVER_KINDS:
            raise InvalidInput(f"retriever must be one of {RETRIEVER_KINDS}, got {kind!r}")
        if kind == "bm25":
            return BM25Retriever(self)
        dense = DenseRetriever(self, self._check_encoder(encoder))
        if kind == "dense":
            return dense
        return HybridRetriever(BM25Retriever(self), dense, rrf_k=rrf_k)

    def search(self, query: str, k: int = 10, *, filter: dict[str, Any] | None = None,
               retriever: str | None = None, encoder: Encoder | None = None) -> list[Candidate]:
        """The top ``k`` documents for ``query`` (hybrid when the index has vectors, else BM25), each
        with its stored ``fields``; ``filter`` keeps only matching documents (see
        :mod:`crossrank.retrieval.filters`), inside the first stage."""
        kind = retriever or ("hybrid" if self.dense is not None else "bm25")
        found: list[Candidate] = self.retriever(kind, encoder=encoder).retrieve(query, k, filter=filter)  # type: ignore[call-arg]
        return found

    def upsert(self, records: Iterable[Record], *, encoder: Encoder | None = None, batch_size: int = 256) -> BuildReport:
        """Add the records, replacing the documents of ids already in the index, and publish them.

        Writes a new generation (see :func:`crossrank.retrieval.build_index`); this object then
        answers from it.
        """
        report = build_index(self.path, records, encoder=encoder, mode="upsert", batch_size=batch_size)
        self._reopen()
        return report

    def delete(self, ids: Iterable[str]) -> BuildReport:
        """Remove the documents of these ids from every stage, publish, and answer from the new generation."""
        report = delete_documents(self.path, ids)
        self._reopen()
        return report

    def _reopen(self) -> None:
        fresh = Index.open(self.path)
        with self._lock:
            old = self.docs
            self.generation, self.manifest, self.docs = fresh.generation, fresh.manifest, fresh.docs
            self.deleted, self.stored_fields = fresh.deleted, fresh.stored_fields
            self._lexical, self._vectors = fresh._lexical, fresh._vectors
        old.close()

    def filter_query(self, spec: dict[str, Any] | None) -> Any:
        """The tantivy query of a filter on the stored fields; ``None`` for no filter."""
        conditions = normalize_filter(spec, self.stored_fields)
        if not conditions:
            return None
        return filter_query(self.lexical().schema, conditions, self.stored_fields)

    @contextlib.contextmanager
    def engine(self, part: str) -> Iterator[None]:
        """Turn a failure of an engine reading ``part`` of this index into :class:`BadIndex`."""
        try:
            yield
        except (CrossrankError, KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException as exc:  # OSError, ValueError, RuntimeError, or a Rust panic (a BaseException)
            raise IndexCorrupt(f"{self.path}: {part} is unreadable ({type(exc).__name__}: {exc}); "
                               "the index is corrupt or incomplete (rebuild it)") from exc

    # -- engines ------------------------------------------------------------------------------
    def lexical(self) -> Any:
        with self._lock:
            if self._lexical is None:
                tantivy = require("tantivy", "index", "BM25 search")
                with self.engine("the lexical index"):
                    lexical = tantivy.Index.open(str(self.generation / layout.LEXICAL_DIR))
                    lexical.searcher()  # loads the segments now: damage shows here, not in a search
                self._lexical = lexical
            return self._lexical

    def query_terms(self, text: str) -> list[str]:
        """``text`` cut into the terms the lexical index holds (its own analyzer: words, lowercased, stemmed)."""
        with self._lock:  # an analyzer is one mutable object on the Rust side
            if self._analyzer is None:
                self._analyzer = lexical_analyzer()
            return [str(term) for term in self._analyzer.analyze(text)]

    def vectors(self) -> Any:
        with self._lock:
            if self._vectors is None:
                usearch = require("usearch.index", "index", "dense search")
                path = self.generation / layout.VECTORS_FILE
                dense = self.dense
                if dense is None:
                    raise IndexUnusable(f"{self.path} has no vectors: rebuild it with an encoder (--encoder)")
                if not path.is_file():
                    raise IndexCorrupt(f"{self.path}: the vector file {layout.VECTORS_FILE} is missing; the index is corrupt")
                with self.engine("the vector index"):
                    vectors = usearch.Index.restore(str(path), view=True)
                if vectors is None or len(vectors) != len(self) or int(vectors.ndim) != int(dense["dim"]):
                    raise IndexCorrupt(f"{self.path}: the vectors do not match the documents and manifest "
                                       f"({0 if vectors is None else len(vectors)} of {vectors.ndim if vectors else '?'} "
                                       f"dimensions for {len(self)} documents of {dense['dim']}); the index is corrupt")
                vectors.expansion_search = EXPANSION_SEARCH  # set once, before any search
                self._vectors = vectors
            return self._vectors

    def _check_encoder(self, encoder: Encoder | None) -> Encoder:
        dense = self.dense
        if dense is None:
            raise IndexUnusable(f"{self.path} has no vectors: rebuild it with an encoder (--encoder) for dense search")
        if encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = Encoder(dense["model"])
                encoder = self._encoder
        if int(encoder.dim) != int(dense["dim"]):
            raise InvalidInput(
                f"encoder {encoder.name} makes {encoder.dim}-dimensional vectors but the index holds "
                f"{dense['dim']}-dimensional ones (built with {dense['model']}); use the same encoder"
            )
        return encoder

    def candidates(self, ords: list[int], scores: list[float]) -> list[Candidate]:
        with self.engine("the stored documents"):
            docs = self.docs.get_documents(ords)
        return [
            Candidate(doc_id, text, float(score), rank, fields)
            for rank, ((doc_id, text, fields), score) in enumerate(zip(docs, scores), start=1)
        ]


class BM25Retriever:
    """BM25 over the stored text (tantivy, English stemming)."""

    name = "bm25"
    filters = True  #: takes ``filter=`` on the stored fields

    def __init__(self, index: Index) -> None:
        self.index = index

    def retrieve(self, query: str, k: int, *, filter: dict[str, Any] | None = None) -> list[Candidate]:
        check_k(k)
        allowed = self.index.filter_query(filter)
        terms = self.index.query_terms(query)
        if not terms:
            return []
        tantivy = require("tantivy", "index", "BM25 search")
        lexical = self.index.lexical()
        schema = lexical.schema
        # user text is words, never query syntax: one term query per analyzed token, OR-ed (as
        # BM25 scores a bag of words); no phrase is ever built, so no positions are needed
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, TEXT_FIELD, term, index_option="freq"))
                   for term in terms]
        query_ = tantivy.Query.boolean_query(clauses)
        if allowed is not None:  # the filter restricts the matches and adds nothing to the BM25 score
            query_ = tantivy.Query.boolean_query([(tantivy.Occur.Must, query_), (tantivy.Occur.Must,
                                                  tantivy.Query.const_score_query(allowed, 0.0))])
        with self.index.engine("the lexical index"):
            searcher = lexical.searcher()
            hits = searcher.search(query_, k, count=False).hits
            ords = [int(searcher.doc(address)[ORD_FIELD][0]) for _, address in hits]
        return self.index.candidates(ords, [float(score) for score, _ in hits])


class DenseRetriever:
    """Nearest neighbours of the query embedding (usearch HNSW); score = cosine or dot."""

    name = "dense"
    filters = True

    def __init__(self, index: Index, encoder: Encoder) -> None:
        self.index = index
        self.encoder = encoder

    def retrieve(self, query: str, k: int, *, filter: dict[str, Any] | None = None) -> list[Candidate]:
        check_k(k)
        allowed = self.index.filter_query(filter)
        vectors = self.index.vectors()
        embedded = self.encoder.embed_query(query)
        if len(vectors) == 0:
            return []
        if allowed is not None:
            lexical = self.index.lexical()
            with self.index.engine("the vector index"):
                keys, scores = filtered_dense(vectors, embedded, k, str((self.index.dense or {}).get("metric", "cos")),
                                              lexical.searcher(), lexical.schema, allowed, ORD_FIELD)
            return self.index.candidates(keys, scores)
        with self.index.engine("the vector index"):
            found = vectors.search(embedded, min(k, len(vectors)))
        keys = [int(key) for key in np.asarray(found.keys)]
        scores = [1.0 - float(d) for d in np.asarray(found.distances)]
        return self.index.candidates(keys, scores)


class HybridRetriever:
    """BM25 and dense candidates fused with reciprocal rank fusion; score = the RRF score."""

    name = "hybrid"
    filters = True

    def __init__(self, lexical: BM25Retriever, dense: DenseRetriever, *, rrf_k: int = 60) -> None:
        self.lexical = lexical
        self.dense = dense
        self.rrf_k = rrf_k

    def retrieve(self, query: str, k: int, *, filter: dict[str, Any] | None = None) -> list[Candidate]:
        check_k(k)
        return reciprocal_rank_fusion(
            [self.lexical.retrieve(query, k, filter=filter), self.dense.retrieve(query, k, filter=filter)], k,
            rrf_k=self.rrf_k,
        )
