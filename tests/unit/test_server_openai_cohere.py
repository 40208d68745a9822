"""OpenAI and Cohere gaps: usage counts, token-id inputs, /v1/models, Cohere embed and billing
meta, and the API docs pages served from local files; in-process on the tiny models."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from tokenizers import Tokenizer

from crossrank import Encoder
from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models

DOCS = ["Crocs Kids' Baya Clog", "leather hiking boots", "a sandal for the beach"]
LONG = "clog " * 1000  # far past the bi-encoder's 256 tokens


@pytest.fixture(scope="module")
def client(bert_dir: Path, minilm_dir: Path, model_cache: Path) -> Iterator[TestClient]:
    settings = ServerSettings(cache_dir=str(model_cache), max_documents=1000)
    models = load_served_models(
        [ModelEntry("msmarco", "cross-encoder", f"file://{bert_dir}"),
         ModelEntry("minilm", "bi-encoder", f"file://{minilm_dir}", dim=384)],
        settings,
    )
    with TestClient(create_app(models, settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path) -> Tokenizer:
    """The bi-encoder's own tokenizer, read directly (specials added, cut at its max length)."""
    tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    return tok


def error_message(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    return message


# -- OpenAI /v1/embeddings ----------------------------------------------------------------------
def test_openai_usage_counts_the_tokens_embedded(client: TestClient, tokenizer: Tokenizer) -> None:
    texts = [*DOCS, LONG]
    data = client.post("/v1/embeddings", json={"input": texts, "model": "minilm"}).json()
    want = sum(len(tokenizer.encode(t).ids) for t in texts)  # specials included, the long one cut to 256
    assert data["usage"] == {"prompt_tokens": want, "total_tokens": want}
    one = client.post("/v1/embeddings", json={"input": DOCS[0]}).json()
    assert one["usage"]["prompt_tokens"] == len(tokenizer.encode(DOCS[0]).ids)


def test_openai_token_ids_are_fed_as_given(client: TestClient, tokenizer: Tokenizer,
                                           minilm_encoder: Encoder) -> None:
    ids = [tokenizer.encode(t).ids for t in DOCS]  # what tokenizer(text)["input_ids"] gives: specials included
    data = client.post("/v1/embeddings", json={"input": ids}).json()
    np.testing.assert_allclose([d["embedding"] for d in data["data"]], minilm_encoder.embed(DOCS), atol=1e-5)
    assert data["usage"]["prompt_tokens"] == sum(map(len, ids))
    single = client.post("/v1/embeddings", json={"input": ids[1]}).json()
    assert len(single["data"]) == 1
    np.testing.assert_allclose(single["data"][0]["embedding"], data["data"][1]["embedding"], atol=1e-6)
    cut = client.post("/v1/embeddings", json={"input": [tokenizer.encode(LONG).ids[:-1] * 2]}).json()
    assert cut["usage"]["prompt_tokens"] == 256  # a list past max_length is cut like a text


@pytest.mark.parametrize("bad", [30522, 100_000, -1, 2**70])
def test_openai_token_ids_outside_the_vocabulary_are_a_422(client: TestClient, bad: int) -> None:
    message = error_message(client.post("/v1/embeddings", json={"input": [[101, 2000, 102], [101, bad, 102]]}), 422)
    assert f"input[1] holds the token id {bad}" in message and "vocabulary of 30522" in message
    assert "check_embedding_ctx_length=False" in message


@pytest.mark.parametrize("body", [{"input": [[101, 102], []]}, {"input": [1.5, 2]}, {"input": [[1, "a"]]},
                                  {"input": [True, False]}])
def test_openai_malformed_token_ids_are_a_422(client: TestClient, body: dict[str, Any]) -> None:
    error_message(client.post("/v1/embeddings", json=body), 422)


def test_openai_sdk_reads_usage_and_models(client: TestClient, tokenizer: Tokenizer) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=client)
    response = sdk.embeddings.create(model="minilm", input=DOCS)
    assert response.usage.prompt_tokens == sum(len(tokenizer.encode(t).ids) for t in DOCS)
    assert len(response.data[0].embedding) == 384
    assert [m.id for m in sdk.models.list()] == ["msmarco", "minilm"]


def test_v1_models_lists_every_configured_model(client: TestClient) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["msmarco", "minilm"]
    for m in data["data"]:
        assert m["object"] == "model" and m["owned_by"] == "crossrank" and isinstance(m["created"], int)


# -- Cohere ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("count, units", [(3, 1), (100, 1), (101, 2)])
def test_cohere_rerank_bills_a_search_unit_per_100_documents(client: TestClient, count: int, units: int) -> None:
    docs = [f"doc {i}" for i in range(count)]
    meta = client.post("/v2/rerank", json={"query": "crocs", "documents": docs, "top_n": 1}).json()["meta"]
    assert meta["billed_units"] == {"search_units": units}


@pytest.mark.parametrize("path", ["/v2/embed", "/v1/embed"])
def test_cohere_embed(client: TestClient, minilm_encoder: Encoder, tokenizer: Tokenizer, path: str) -> None:
    body = {"texts": DOCS, "model": "minilm", "input_type": "search_document",
            "embedding_types": ["float", "binary", "ubinary"]}
    data = client.post(path, json=body).json()
    want = minilm_encoder.embed(DOCS)
    np.testing.assert_allclose(data["embeddings"]["float"], want, atol=1e-5)
    bits = np.packbits(want > 0, axis=1)
    assert data["embeddings"]["ubinary"] == bits.tolist() and len(bits[0]) == 48
    assert data["embeddings"]["binary"] == (bits.astype(int) - 128).tolist()
    assert data["texts"] == DOCS and data["id"]
    assert data["meta"]["api_version"]["version"] == path[2]
    assert data["meta"]["billed_units"] == {"input_tokens": sum(len(tokenizer.encode(t).ids) for t in DOCS)}


def test_cohere_embed_v1_without_types_is_a_list_of_floats(client: TestClient, minilm_encoder: Encoder) -> None:
    data = client.post("/v1/embed", json={"texts": DOCS}).json()
    assert data["response_type"] == "embeddings_floats"
    np.testing.assert_allclose(data["embeddings"], minilm_encoder.embed(DOCS), atol=1e-5)
    assert list(client.post("/v2/embed", json={"texts": DOCS}).json()["embeddings"]) == ["float"]


@pytest.mark.parametrize("body, status, words", [
    ({"texts": DOCS, "embedding_types": ["int8"]}, 422, "int8"),
    ({"texts": DOCS, "embedding_types": ["nope"]}, 422, None),
    ({"texts": [DOCS[0], LONG], "truncate": "NONE"}, 413, "texts [1]"),
    ({"texts": DOCS, "truncate": "START"}, 422, "START"),
    ({"texts": DOCS, "output_dimension": 256}, 422, "384"),
    ({"texts": DOCS, "images": ["data:image/png;base64,AAAA"]}, 422, "images"),
    ({"texts": DOCS, "model": "embed-english-v3.0"}, 404, "minilm"),
])
def test_cohere_embed_refuses_what_it_cannot_do(client: TestClient, body: dict[str, Any], status: int,
                                                words: str | None) -> None:
    message = error_message(client.post("/v2/embed", json=body), status)
    assert words is None or words in message


def test_cohere_embed_truncates_at_the_end_by_default(client: TestClient) -> None:
    meta = client.post("/v2/embed", json={"texts": [LONG]}).json()["meta"]
    assert meta["billed_units"]["input_tokens"] == 256


class _Through(httpx.BaseTransport):
    """An httpx transport that sends through the test client (the SDK takes a plain httpx client)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        got = self.client.request(request.method, request.url.raw_path.decode(), headers=dict(request.headers),
                                  content=request.read())
        return httpx.Response(got.status_code, headers=dict(got.headers), content=got.content)


def test_cohere_sdk_embed_v2(client: TestClient, minilm_encoder: Encoder) -> None:
    cohere = pytest.importorskip("cohere")
    http = httpx.Client(transport=_Through(client))
    sdk = cohere.ClientV2(api_key="unused", base_url="http://testserver", httpx_client=http)
    response = sdk.embed(texts=DOCS, model="minilm", input_type="search_query", embedding_types=["float"])
    np.testing.assert_allclose(response.embeddings.float_, minilm_encoder.embed(DOCS), atol=1e-5)
    assert response.meta.billed_units.input_tokens > len(DOCS)
    v1 = cohere.Client(api_key="unused", base_url="http://testserver", httpx_client=http)
    np.testing.assert_allclose(v1.embed(texts=DOCS, model="minilm").embeddings, minilm_encoder.embed(DOCS), atol=1e-5)


# -- the API docs pages ------------------------------------------------------------------------
def _asset_urls(html: str) -> list[str]:
    """Every URL the page loads: src/href attributes and the ``url:`` of Swagger UI's config."""
    return [a or b for a, b in re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""",
                                          html)]


@pytest.mark.parametrize("page, kinds", [("/docs", {"javascript", "css"}), ("/redoc", {"javascript"})])
def test_docs_pages_load_only_local_files(client: TestClient, page: str, kinds: set[str]) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    settings = state.settings
    state.settings = dataclasses.replace(settings, api_key="s3cret")  # the pages stay open, as before
    try:
        html = client.get(page)
        assert html.status_code == 200, html.text
        urls = _asset_urls(html.text)
        assert urls and not [u for u in urls if "//" in u], urls  # nothing from another host (no CDN)
        seen = set()
        for url in urls:
            got = client.get(url)
            assert got.status_code == 200, url
            seen |= {k for k in kinds if k in got.headers["content-type"]}
        assert seen == kinds
    finally:
        state.settings = settings
