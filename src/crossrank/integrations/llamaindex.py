"""LlamaIndex: a node postprocessor that reranks retrieved nodes with a cross-encoder.

>>> from crossrank import Reranker  # doctest: +SKIP
>>> rerank = CrossrankRerank(reranker=Reranker("cross-encoder/ms-marco-MiniLM-L6-v2"), top_n=3)  # doctest: +SKIP
>>> rerank = CrossrankRerank(url="http://127.0.0.1:8080", model="msmarco", top_n=3)  # doctest: +SKIP
>>> index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])  # doctest: +SKIP

Like LlamaIndex's own rerankers it scores each node's content as embedded
(``MetadataMode.EMBED``: the text plus the metadata not excluded from embedding) and returns
the best ``top_n`` as ``NodeWithScore`` whose ``score`` is the cross-encoder's; the nodes
themselves, metadata included, are unchanged. Needs ``pip install 'crossrank[llamaindex]'``.
"""

from __future__ import annotations

from typing import Any

from crossrank.extras import require

require("llama_index.core", "llamaindex", "The LlamaIndex integration")

from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402
from pydantic import PositiveInt  # noqa: E402

from crossrank.errors import InvalidInput  # noqa: E402
from crossrank.integrations.client import DEFAULT_TIMEOUT_S, Scorer, scorer_for  # noqa: E402
from crossrank.scores import ranked_order  # noqa: E402

__all__ = ["CrossrankRerank"]


class CrossrankRerank(BaseNodePostprocessor):
    """Rerank nodes: the best ``top_n`` (all if ``None``), best first, scored by the cross-encoder."""

    reranker: Any = Field(default=None, description="a crossrank.Reranker that scores in this process")
    url: str | None = Field(default=None, description="a crossrank server address, e.g. http://127.0.0.1:8080")
    model: str | None = Field(default=None, description="the served model's name (with url)")
    api_key: str | None = Field(default=None, repr=False, description="Authorization: Bearer key (with url)")
    timeout: float = Field(default=DEFAULT_TIMEOUT_S, description="seconds per server request (with url)")
    top_n: PositiveInt | None = Field(default=2, description="how many nodes to keep (None: all)")
    _scorer: Scorer = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)  # the fields' types; then the choice of source, as crossrank's own InvalidInput
        self._scorer = scorer_for(self.reranker, self.url, model=self.model, api_key=self.api_key,
                                  timeout=self.timeout, extra="llamaindex")

    @classmethod
    def class_name(cls) -> str:
        return "CrossrankRerank"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInput("reranking needs the query: pass query_str= or query_bundle=")
        if not nodes:
            return []
        texts = [node.node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        scores = self._scorer.score(query_bundle.query_str, texts)
        return [NodeWithScore(node=nodes[i].node, score=float(scores[i])) for i in ranked_order(scores, self.top_n)]
