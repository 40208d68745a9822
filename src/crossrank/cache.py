"""A bounded LRU cache of relevance logits keyed by (model, query, document hash).

Paginated searches and retries send the same candidates again; a hit costs a dictionary
lookup instead of a transformer pass. The cache stores the raw logit and the truncation
flag, so the activation can still be chosen per call. Documents are keyed by a 128-bit
BLAKE2 digest, so the cache does not keep document texts alive. Thread-safe.

>>> cache = ScoreCache(max_entries=2)
>>> cache.put(("m", "q", "d"), 1.5, False)
>>> cache.get(("m", "q", "d")), cache.stats()["hits"]
((1.5, False), 1)
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from crossrank.errors import InvalidInput

Key = tuple[str, str, str]


def document_hash(text: str) -> str:
    """128-bit BLAKE2b digest of a document's UTF-8 text (hex)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class ScoreCache:
    """Least-recently-used map from (model key, query, document hash) to (logit, truncated).

    ``max_entries`` bounds memory: each entry costs about 250 bytes plus the query text
    (queries are shared between the entries of one request).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if int(max_entries) < 1:
            raise InvalidInput("a score cache needs max_entries >= 1")
        self.max_entries = int(max_entries)
        self._data: OrderedDict[Key, tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def key(self, model: str, query: str, document: str) -> Key:
        return (model, query, document_hash(document))

    def get(self, key: Key) -> tuple[float, bool] | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Key, logit: float, truncated: bool) -> None:
        with self._lock:
            self._data[key] = (float(logit), bool(truncated))
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def stats(self) -> dict[str, Any]:
        """Counters for metrics endpoints: hits, misses, evictions, entries, hit_rate."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "entries": len(self._data),
                "max_entries": self.max_entries,
                "hit_rate": self.hit_rate,
            }
