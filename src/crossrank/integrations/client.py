"""Where the integrations get their scores: an in-process :class:`~crossrank.Reranker`, or a
``crossrank serve`` URL called through its Cohere-format ``POST /v1/rerank`` route.

Both give ``score(query, documents)``: one score per document, in input order, so every
integration ranks the same way (:func:`crossrank.scores.ranked_order`: best first, ties keep
input order) whichever side computed the numbers.

>>> client = RerankClient("http://127.0.0.1:8080", model="msmarco")  # doctest: +SKIP
>>> client.score("crocs for kids", ["Crocs Kids' Baya Clog", "Leather boots"])  # doctest: +SKIP
array([0.93, 0.02])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from crossrank.errors import InvalidInput, ServerError
from crossrank.extras import require
from crossrank.rerank import Reranker
from crossrank.texts import check_documents, check_text

__all__ = ["RerankClient", "Scorer", "ServerError", "scorer_for"]

#: seconds to wait for a server's answer unless the caller says otherwise
DEFAULT_TIMEOUT_S = 60.0


class Scorer(Protocol):
    """Scores of ``documents`` for ``query``, in input order."""

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray: ...


class RerankClient:
    """Score documents on a crossrank server (``POST {url}/v1/rerank``, Cohere format).

    ``model`` is the served model's name (default: the server's only or default
    cross-encoder); ``api_key`` is sent as ``Authorization: Bearer``; ``timeout`` bounds each
    request in seconds. A 4xx/5xx answer, a timeout or a refused connection raises
    :class:`ServerError` with the server's own message. Safe to share between threads.
    """

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, extra: str = "langchain") -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInput(f"url must be a crossrank server address such as 'http://127.0.0.1:8080', got {url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidInput(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._httpx = require("httpx", extra, "Reranking through a crossrank server")
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = self._httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        query = check_text(query, "query")
        docs = check_documents(documents)
        if not docs:
            return np.zeros(0, dtype=np.float64)
        body: dict[str, Any] = {"query": query, "documents": docs}
        if self.model is not None:
            body["model"] = self.model
        results = self._results(self._post("/v1/rerank", body))
        scores = np.full(len(docs), np.nan, dtype=np.float64)
        for item in results:
            index, score = item.get("index"), item.get("relevance_score")
            if (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(docs)
                    or not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score)):
                raise ServerError(f"{self.url}/v1/rerank answered a result that is not an index and a score: {item!r}")
            scores[index] = float(score)
        if np.isnan(scores).any():
            raise ServerError(f"{self.url}/v1/rerank scored {len(results)} of {len(docs)} documents")
        return scores

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        httpx = self._httpx
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise ServerError(f"the crossrank server at {self.url} did not answer within {self.timeout:g} s "
                              "(raise timeout=, or send fewer documents)") from exc
        except httpx.HTTPError as exc:
            raise ServerError(f"could not reach the crossrank server at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise ServerError(f"the crossrank server at {self.url} answered {response.status_code} to {path}: "
                              f"{_error_message(response)}", status=response.status_code)
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(f"{self.url}{path} answered {response.status_code} with a body that is not JSON",
                              status=response.status_code) from exc

    @staticmethod
    def _results(data: Any) -> list[dict[str, Any]]:
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
            raise ServerError("the server's answer has no 'results' list: is the URL a crossrank "
                              "(or Cohere-compatible) rerank server?")
        return results

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RerankClient({self.url!r}, model={self.model!r})"


def _error_message(response: Any) -> str:
    """The message of crossrank's error envelope, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return str(response.text[:300] or response.reason_phrase)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return f"{error['message']} ({error.get('type', 'error')})"
        if isinstance(data.get("message"), str):
            return str(data["message"])
        if "detail" in data:
            return str(data["detail"])
    return str(data)[:300]


def scorer_for(reranker: Reranker | None, url: str | None, *, model: str | None, api_key: str | None,
               timeout: float, extra: str) -> Scorer:
    """The in-process ``reranker``, or a :class:`RerankClient` for ``url``: exactly one of them."""
    if (reranker is None) == (url is None):
        raise InvalidInput("give either reranker=Reranker(...) to score in this process or "
                           "url='http://host:port' of a crossrank server, not both and not neither")
    if reranker is not None:
        if not isinstance(reranker, Reranker):
            raise InvalidInput(f"reranker must be a crossrank.Reranker, got {type(reranker).__name__}")
        if model is not None or api_key is not None:
            raise InvalidInput("model= and api_key= name a served model and its key: they go with url=, "
                               "not with an in-process reranker")
        return reranker
    assert url is not None
    return RerankClient(url, model=model, api_key=api_key, timeout=timeout, extra=extra)
