"""Lexical retrieval from Elasticsearch or OpenSearch with a ``multi_match`` query.

A thin adapter over the official client: it builds the query (see :meth:`build_query`),
sends it with ``client.search`` and maps hits to candidates (``_id`` and a ``_source``
text field). Pass an ``elasticsearch.Elasticsearch`` or an ``opensearchpy.OpenSearch``.

>>> from elasticsearch import Elasticsearch  # doctest: +SKIP
>>> retriever = ElasticsearchRetriever(  # doctest: +SKIP
...     Elasticsearch("http://es:9200"), "products", fields=["title^2", "description"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.retrieval.base import Candidate
from crossrank.retrieval.index import check_k

MATCH_TYPES = ("best_fields", "most_fields", "cross_fields", "phrase", "phrase_prefix", "bool_prefix")


class ElasticsearchRetriever:
    """``multi_match`` over ``fields`` (boosts allowed, e.g. ``title^2``); the text shown is ``text_field``."""

    name = "elasticsearch"

    def __init__(
        self,
        client: Any,
        index: str,
        *,
        fields: Sequence[str] = ("text",),
        text_field: str | None = None,
        match_type: str = "best_fields",
        opensearch: bool | None = None,
    ) -> None:
        if not fields:
            raise InvalidInput("fields must name at least one field")
        if match_type not in MATCH_TYPES:
            raise InvalidInput(f"match_type must be one of {MATCH_TYPES}")
        self.client = client
        self.index = index
        self.fields = list(fields)
        self.text_field = text_field or self.fields[0].split("^")[0]
        self.match_type = match_type
        self.opensearch = type(client).__module__.startswith("opensearchpy") if opensearch is None else opensearch

    def build_query(self, query: str, k: int) -> dict[str, Any]:
        """The search body sent to ``POST /{index}/_search``."""
        return {
            "query": {"multi_match": {"query": query, "fields": self.fields, "type": self.match_type}},
            "size": k,
            "_source": [self.text_field],
        }

    def retrieve(self, query: str, k: int) -> list[Candidate]:
        check_k(k)
        body = self.build_query(query, k)
        if self.opensearch:
            response = self.client.search(index=self.index, body=body)
        else:
            response = self.client.search(
                index=self.index, query=body["query"], size=body["size"], source=body["_source"]
            )
        hits = response["hits"]["hits"]
        return [
            Candidate(
                id=str(hit["_id"]),
                text=str((hit.get("_source") or {}).get(self.text_field, "")),
                score=float(hit.get("_score") or 0.0),
                rank=rank,
            )
            for rank, hit in enumerate(hits, start=1)
        ]
