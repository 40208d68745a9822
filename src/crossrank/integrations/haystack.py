"""Haystack 2: a ranker component that reorders documents with a cross-encoder.

>>> from crossrank import Reranker  # doctest: +SKIP
>>> ranker = CrossrankRanker(reranker=Reranker("cross-encoder/ms-marco-MiniLM-L6-v2"), top_k=5)  # doctest: +SKIP
>>> ranker = CrossrankRanker(url="http://127.0.0.1:8080", model="msmarco", top_k=5)  # doctest: +SKIP
>>> ranker.run(query="crocs for kids", documents=docs)["documents"]  # doctest: +SKIP

``run`` returns copies of the best ``top_k`` documents, best first, with ``score`` set to the
cross-encoder's and ``meta`` kept; the input documents are not changed. Add it to a
``Pipeline`` after a retriever like any ranker. Needs ``pip install 'crossrank[haystack]'``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from crossrank.extras import require

require("haystack", "haystack", "The Haystack integration")

from haystack import Document, component, default_to_dict  # noqa: E402

from crossrank.errors import InvalidInput  # noqa: E402
from crossrank.integrations.client import DEFAULT_TIMEOUT_S, scorer_for  # noqa: E402
from crossrank.options import check_top_k  # noqa: E402
from crossrank.rerank import Reranker  # noqa: E402
from crossrank.scores import ranked_order  # noqa: E402

__all__ = ["CrossrankRanker"]


@component
class CrossrankRanker:
    """Rank documents by a cross-encoder's score, in-process (``reranker``) or on a crossrank
    server (``url``, with ``model``, ``api_key`` and ``timeout`` in seconds)."""

    def __init__(self, reranker: Reranker | None = None, url: str | None = None, model: str | None = None,
                 api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, top_k: int | None = 10) -> None:
        self.top_k = check_top_k(top_k)
        self.url, self.model, self.timeout = url, model, timeout
        self._in_process = reranker is not None
        self._scorer = scorer_for(reranker, url, model=model, api_key=api_key, timeout=timeout, extra="haystack")

    def to_dict(self) -> dict[str, Any]:
        """What ``Pipeline.dumps`` writes: the server settings (not ``api_key``: pass it again on
        loading). An in-process reranker cannot be written; save a pipeline that uses ``url=``."""
        if self._in_process:
            raise InvalidInput("a CrossrankRanker with an in-process reranker cannot be serialized; "
                               "build it in code, or use url= of a crossrank server")
        return default_to_dict(self, url=self.url, model=self.model, timeout=self.timeout, top_k=self.top_k)

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """The best ``top_k`` documents (default: the component's ``top_k``; all if both are None)."""
        top_k = check_top_k(top_k) if top_k is not None else self.top_k
        if not documents:
            return {"documents": []}
        texts = []
        for i, doc in enumerate(documents):
            if doc.content is None:
                raise InvalidInput(f"documents[{i}] (id {doc.id}) has no text content to rank")
            texts.append(doc.content)
        scores = self._scorer.score(query, texts)
        return {"documents": [replace(documents[i], score=float(scores[i])) for i in ranked_order(scores, top_k)]}
