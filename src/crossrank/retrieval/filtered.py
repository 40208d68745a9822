"""Dense search restricted to the documents a filter allows, with a full top-k when enough match.

The filter runs in the lexical index (tantivy), which holds every document's filter fields.
When it matches few documents (at most :data:`EXACT_LIMIT`), their vectors are scored
exactly: the true top-k of the allowed set. Otherwise the HNSW graph is searched for more
neighbours than asked (``k`` divided by the share of documents allowed, doubled) and the
neighbours are kept when the filter allows them (one tantivy query on their ordinals);
while fewer than ``k`` are kept the search widens fourfold, ending with an exhaustive one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from crossrank.extras import require

#: a filter matching at most this many documents is answered by exact scoring of their vectors
EXACT_LIMIT = 10_000


def matching_ords(searcher: Any, query: Any, limit: int, ord_field: str) -> list[int]:
    """The ordinals of up to ``limit`` documents matching ``query``."""
    if limit < 1:
        return []
    return [int(searcher.doc(address)[ord_field][0]) for _, address in searcher.search(query, limit).hits]


def count(searcher: Any, query: Any) -> int:
    return int(searcher.search(query, 1, count=True).count)


def filtered_dense(
    vectors: Any, embedded: np.ndarray, k: int, metric: str, searcher: Any, schema: Any, allowed: Any,
    ord_field: str,
) -> tuple[list[int], list[float]]:
    """(ordinals, scores) of the ``k`` nearest documents the tantivy query ``allowed`` matches."""
    total = count(searcher, allowed)
    if total == 0:
        return [], []
    if total <= EXACT_LIMIT:
        return _exact(vectors, embedded, k, metric, matching_ords(searcher, allowed, total, ord_field))
    tantivy = require("tantivy", "index", "filtering")
    size = len(vectors)
    want = min(size, max(2 * k, math.ceil(2 * k * size / total)))
    while True:
        exhaustive = want >= size
        found = vectors.search(embedded, min(want, size), exact=exhaustive)
        keys = [int(key) for key in np.asarray(found.keys)]
        distances = [float(d) for d in np.asarray(found.distances)]
        members = tantivy.Query.boolean_query([
            (tantivy.Occur.Must, tantivy.Query.term_set_query(schema, ord_field, keys)),
            (tantivy.Occur.Must, allowed),
        ])
        kept = set(matching_ords(searcher, members, len(keys), ord_field))
        pairs = [(key, 1.0 - d) for key, d in zip(keys, distances) if key in kept]
        if len(pairs) >= k or exhaustive:
            pairs = pairs[:k]
            return [key for key, _ in pairs], [score for _, score in pairs]
        want = min(size, want * 4)


def _exact(vectors: Any, embedded: np.ndarray, k: int, metric: str, ords: list[int]) -> tuple[list[int], list[float]]:
    keys = np.asarray(ords, dtype=np.uint64)
    matrix = np.asarray(vectors.get(keys), dtype=np.float32).reshape(len(ords), -1)
    query = np.asarray(embedded, dtype=np.float32).reshape(-1)
    scores = matrix @ query
    if metric == "cos":
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(query))
        scores = np.divide(scores, norms, out=np.zeros_like(scores), where=norms > 0)
    order = np.lexsort((keys, -scores))[:k]  # best first; ties by ordinal, so the order is stable
    return [int(keys[i]) for i in order], [float(scores[i]) for i in order]
