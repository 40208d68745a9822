"""Dense retrieval from a Qdrant collection through ``qdrant-client``.

The same code runs against a Qdrant cluster (``url=``) and against the client's embedded
local mode (``path=`` or ``location=":memory:"``), which the tests use.

>>> retriever = QdrantRetriever("products", encoder, url="http://qdrant:6333")  # doctest: +SKIP
>>> retriever.retrieve("crocs for kids", 100)[0].id  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from crossrank.encode import Encoder
from crossrank.extras import require
from crossrank.retrieval.base import Candidate
from crossrank.retrieval.build import batched
from crossrank.retrieval.index import check_k
from crossrank.retrieval.records import Record

ID_KEY = "id"
TEXT_KEY = "text"
_NAMESPACE = uuid.UUID("6f1c2d1e-8a7b-4c55-9a0e-2b7c3d4e5f60")


def point_id(doc_id: str) -> str:
    """Qdrant ids must be integers or UUIDs: a stable UUID derived from the document id."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


def connect(url: str | None = None, *, path: str | None = None, api_key: str | None = None) -> Any:
    """A ``QdrantClient`` for a server (``url``), an on-disk local store (``path``) or memory."""
    qdrant_client = require("qdrant_client", "qdrant", "the Qdrant retriever")
    if url is not None:
        return qdrant_client.QdrantClient(url=url, api_key=api_key)
    if path is not None:
        return qdrant_client.QdrantClient(path=path)
    return qdrant_client.QdrantClient(location=":memory:")


def index_into_qdrant(
    client: Any, collection: str, records: Iterable[Record], encoder: Encoder, *, batch_size: int = 256
) -> int:
    """Create ``collection`` (cosine for normalised encoders, dot otherwise) and upsert embedded records."""
    models = require("qdrant_client.models", "qdrant", "the Qdrant retriever")
    distance = models.Distance.COSINE if encoder.normalize else models.Distance.DOT
    if not client.collection_exists(collection):
        client.create_collection(collection, vectors_config=models.VectorParams(size=encoder.dim, distance=distance))
    count = 0
    for batch in batched(records, batch_size):
        vectors = encoder.embed([r.text for r in batch])
        client.upsert(
            collection,
            points=[
                models.PointStruct(id=point_id(r.id), vector=v.tolist(), payload={ID_KEY: r.id, TEXT_KEY: r.text})
                for r, v in zip(batch, vectors)
            ],
        )
        count += len(batch)
    return count


class QdrantRetriever:
    """Nearest neighbours of the query embedding in a Qdrant collection.

    Payload keys ``id_key``/``text_key`` hold the document id and text (the layout
    :func:`index_into_qdrant` writes); points without an id payload use the point id.
    """

    name = "qdrant"

    def __init__(
        self,
        collection: str,
        encoder: Encoder,
        *,
        client: Any | None = None,
        url: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        id_key: str = ID_KEY,
        text_key: str = TEXT_KEY,
        vector_name: str | None = None,
    ) -> None:
        self.client = client if client is not None else connect(url, path=path, api_key=api_key)
        self.collection = collection
        self.encoder = encoder
        self.id_key = id_key
        self.text_key = text_key
        self.vector_name = vector_name

    def retrieve(self, query: str, k: int) -> list[Candidate]:
        check_k(k)
        vector = self.encoder.embed_query(query).tolist()
        response = self.client.query_points(
            self.collection, query=vector, using=self.vector_name, limit=k, with_payload=[self.id_key, self.text_key]
        )
        out = []
        for rank, point in enumerate(response.points, start=1):
            payload = point.payload or {}
            out.append(
                Candidate(
                    id=str(payload.get(self.id_key, point.id)),
                    text=str(payload.get(self.text_key, "")),
                    score=float(point.score),
                    rank=rank,
                )
            )
        return out
