"""Truncation over HTTP: a query cut to fit is reported and refused like a cut document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from crossrank import Reranker
from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models

LONG_QUERY = "where can i buy waterproof crocs clogs for kids " * 40  # far past half of 512 tokens


@pytest.fixture(scope="module")
def client(bert_dir: Path, model_cache: Path) -> Iterator[TestClient]:
    settings = ServerSettings(cache_dir=str(model_cache))
    models = load_served_models([ModelEntry("msmarco", "cross-encoder", f"file://{bert_dir}")], settings)
    with TestClient(create_app(models, settings)) as test_client:
        yield test_client


def test_tei_refuses_a_query_it_would_cut_when_truncate_is_false(client: TestClient) -> None:
    """A query longer than half the budget was cut silently: `truncate: false` answered 200."""
    response = client.post("/rerank", json={"query": LONG_QUERY, "texts": ["boots", "clog"], "truncate": False})
    assert response.status_code == 413, response.text
    assert "query" in response.json()["message"]
    assert client.post("/rerank", json={"query": "crocs", "texts": ["boots"], "truncate": False}).status_code == 200
    assert client.post("/rerank", json={"query": LONG_QUERY, "texts": ["boots"]}).status_code == 200


def test_a_cut_query_is_counted_as_truncated(client: TestClient, bert_reranker: Reranker) -> None:
    def truncated_total() -> float:
        metrics = client.get("/metrics").text
        lines = [line for line in metrics.splitlines() if line.startswith("crossrank_truncated_pairs_total")]
        return sum(float(line.split()[-1]) for line in lines)

    before = truncated_total()
    data = client.post("/v2/rerank", json={"model": "msmarco", "query": LONG_QUERY, "documents": ["boots", "clog"]})
    assert data.status_code == 200
    assert truncated_total() - before == 2
    want = bert_reranker.score(LONG_QUERY, ["boots", "clog"])
    got = sorted((r["index"], r["relevance_score"]) for r in data.json()["results"])
    np.testing.assert_allclose([s for _, s in got], want, rtol=1e-5)
