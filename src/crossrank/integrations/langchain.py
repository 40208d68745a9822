"""LangChain: a document compressor that reranks, and a retriever over crossrank's embedded index.

>>> from crossrank import Reranker  # doctest: +SKIP
>>> compressor = CrossrankRerank(reranker=Reranker("cross-encoder/ms-marco-MiniLM-L6-v2"), top_n=3)  # doctest: +SKIP
>>> compressor = CrossrankRerank(url="http://127.0.0.1:8080", model="msmarco")  # doctest: +SKIP
>>> compressor.compress_documents(docs, "crocs for kids")  # doctest: +SKIP

``CrossrankRerank`` is what LangChain's ``ContextualCompressionRetriever`` takes as its
``base_compressor``; like LangChain's own ``CohereRerank`` it returns copies of the best
``top_n`` documents, best first, with the score in ``metadata["relevance_score"]``.
``CrossrankRetriever`` searches an :class:`~crossrank.Index` (or any crossrank retriever) and
reranks its candidates. Needs ``pip install 'crossrank[langchain]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from crossrank.extras import require

require("langchain_core", "langchain", "The LangChain integration")

from langchain_core.callbacks import CallbackManagerForRetrieverRun, Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from pydantic import ConfigDict, Field, PositiveInt, PrivateAttr  # noqa: E402

from crossrank.errors import InvalidInput  # noqa: E402
from crossrank.integrations.client import DEFAULT_TIMEOUT_S, Scorer, scorer_for  # noqa: E402
from crossrank.retrieval.base import Hit, Retriever  # noqa: E402
from crossrank.retrieval.index import Index  # noqa: E402
from crossrank.retrieval.pipeline import Pipeline, hits_from_scores  # noqa: E402
from crossrank.scores import ranked_order  # noqa: E402
from crossrank.texts import check_text  # noqa: E402

__all__ = ["CrossrankRerank", "CrossrankRetriever"]


class CrossrankRerank(BaseDocumentCompressor):
    """Rerank documents with a cross-encoder: the best ``top_n`` (all if ``None``), best first,
    copies with ``metadata["relevance_score"]`` added and the rest of the metadata kept."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = Field(default=None, description="a crossrank.Reranker that scores in this process")
    url: str | None = Field(default=None, description="a crossrank server address, e.g. http://127.0.0.1:8080")
    model: str | None = Field(default=None, description="the served model's name (with url)")
    api_key: str | None = Field(default=None, repr=False, description="Authorization: Bearer key (with url)")
    timeout: float = Field(default=DEFAULT_TIMEOUT_S, description="seconds per server request (with url)")
    top_n: PositiveInt | None = 3
    _scorer: Scorer = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)  # the fields' types; then the choice of source, as crossrank's own InvalidInput
        self._scorer = scorer_for(self.reranker, self.url, model=self.model, api_key=self.api_key,
                                  timeout=self.timeout, extra="langchain")

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        if not documents:
            return []
        scores = self._scorer.score(query, [doc.page_content for doc in documents])
        out = []
        for i in ranked_order(scores, self.top_n):
            doc = documents[i]
            copy = Document(page_content=doc.page_content, metadata=deepcopy(doc.metadata), id=doc.id)
            copy.metadata["relevance_score"] = float(scores[i])
            out.append(copy)
        return out


class CrossrankRetriever(BaseRetriever):
    """Search ``index`` (a :class:`~crossrank.Index`: hybrid when it has vectors, else BM25; or
    any crossrank retriever, e.g. ``index.retriever("bm25")``) for ``candidates`` documents,
    rerank them and return the best ``top_k`` as documents whose metadata holds the index's
    stored fields (``crossrank index --store``) and ``id``, ``rank``, ``first_stage_rank``,
    ``first_stage_score`` and ``relevance_score`` (these win over a stored field of the same name)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any = Field(description="a crossrank.Index or crossrank retriever (the first stage)")
    reranker: Any = Field(default=None, description="a crossrank.Reranker that scores in this process")
    url: str | None = Field(default=None, description="a crossrank server address, e.g. http://127.0.0.1:8080")
    model: str | None = Field(default=None, description="the served model's name (with url)")
    api_key: str | None = Field(default=None, repr=False, description="Authorization: Bearer key (with url)")
    timeout: float = Field(default=DEFAULT_TIMEOUT_S, description="seconds per server request (with url)")
    candidates: PositiveInt = 100
    top_k: PositiveInt = 10
    _first_stage: Retriever = PrivateAttr()
    _scorer: Scorer = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)  # the fields' types; then the choice of source, as crossrank's own InvalidInput
        if not isinstance(self.index, (Index, Retriever)):
            raise InvalidInput(f"index must be a crossrank.Index or a crossrank retriever, got {type(self.index).__name__}")
        self._first_stage = Pipeline(self.index).retriever
        self._scorer = scorer_for(self.reranker, self.url, model=self.model, api_key=self.api_key,
                                  timeout=self.timeout, extra="langchain")

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        query = check_text(query, "query")
        found = self._first_stage.retrieve(query, self.candidates)
        if not found:
            return []
        hits = hits_from_scores(found, self._scorer.score(query, [c.text for c in found]), self.top_k)
        return [_document(hit) for hit in hits]


def _document(hit: Hit) -> Document:
    metadata: dict[str, Any] = {**hit.fields, "id": hit.id, "rank": hit.rank, "first_stage_rank": hit.first_stage_rank,
                                "first_stage_score": hit.first_stage_score, "relevance_score": hit.rerank_score}
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)
