"""Every wire format, the error envelope, limits and auth, in-process.

The default cross-encoder ("msmarco") runs on :class:`fakes.FakeRuntime` (real tokenizer and
options, scores from token ids): these tests check the HTTP plumbing, not a model. "xlmr" and
the bi-encoder run their tiny real models.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from crossrank import Encoder, Reranker
from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models
from crossrank.server.app import DEFAULT_ROUTERS
from crossrank.server.metrics import Metrics
from fakes import with_fake_runtime

QUERY = "crocs"
DOCS = ["Crocs Jibbitz 5-Pack Alien Shoe Charms", "Crocs Specialist Vent Work", "Crocs Kids' Baya Clog",
        "leather hiking boots", "a sandal for the beach"]


@pytest.fixture(scope="module")
def app_client(bert_dir: Path, minilm_dir: Path, xlmr_dir: Path, model_cache: Path) -> Iterator[TestClient]:
    settings = ServerSettings(cache_dir=str(model_cache), max_documents=1000, max_body_bytes=2_000_000)
    metrics = Metrics()
    models = load_served_models(
        [ModelEntry("msmarco", "cross-encoder", f"file://{bert_dir}"),
         ModelEntry("xlmr", "cross-encoder", str(xlmr_dir)),
         ModelEntry("minilm", "bi-encoder", f"file://{minilm_dir}", dim=384)],
        settings, observer=metrics.observer,
    )
    with_fake_runtime(models.cross["msmarco"].reranker)
    with TestClient(create_app(models, settings, metrics=metrics)) as client:
        yield client


@pytest.fixture()
def client(app_client: TestClient) -> Iterator[TestClient]:
    """The shared client; settings changed by a test are restored after it."""
    settings = app_client.app.state.settings  # type: ignore[attr-defined]
    yield app_client
    app_client.app.state.settings = settings  # type: ignore[attr-defined]


def set_settings(client: TestClient, **changes: Any) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    state.settings = dataclasses.replace(state.settings, **changes)


def expected(reranker: Reranker, docs: list[str], **options: Any) -> np.ndarray:
    return reranker.score(QUERY, docs, **options)


def assert_error(response: Any, status: int, kind: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body["error"]) >= {"type", "message"} and body["error"]["message"]
    if kind is not None:
        assert body["error"]["type"] == kind
    return body


# -- the wire formats ---------------------------------------------------------------------------
def test_metarank_cross_scores_in_input_order(client: TestClient, fake_reranker: Reranker) -> None:
    body = {"input": [{"query": QUERY, "text": d} for d in DOCS]}
    response = client.post("/inference/cross/msmarco", json=body)
    assert response.status_code == 200
    data = response.json()
    assert isinstance(data["took"], int)
    np.testing.assert_allclose(data["scores"], expected(fake_reranker, DOCS), rtol=1e-6)


def test_metarank_cross_serves_the_named_model(client: TestClient, xlmr_reranker: Reranker) -> None:
    body = {"input": [{"query": QUERY, "text": d} for d in DOCS]}
    data = client.post("/inference/cross/xlmr", json=body).json()
    np.testing.assert_allclose(data["scores"], expected(xlmr_reranker, DOCS), rtol=1e-6)


def test_metarank_encoder(client: TestClient, minilm_encoder: Encoder) -> None:
    data = client.post("/inference/encoder/minilm", json={"texts": DOCS}).json()
    np.testing.assert_allclose(data["embeddings"], minilm_encoder.embed(DOCS), atol=1e-5)
    assert isinstance(data["took"], int)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_cohere_rerank_sorted_and_cut(client: TestClient, fake_reranker: Reranker, path: str) -> None:
    body = {"model": "msmarco", "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True}
    data = client.post(path, json=body).json()
    scores = expected(fake_reranker, DOCS)
    order = list(np.argsort(-scores, kind="stable")[:3])
    assert [r["index"] for r in data["results"]] == order
    np.testing.assert_allclose([r["relevance_score"] for r in data["results"]], scores[order], rtol=1e-6)
    assert [r["document"]["text"] for r in data["results"]] == [DOCS[i] for i in order]
    assert data["id"] and data["meta"]["api_version"]["version"] == path[2]


def test_cohere_documents_as_objects_and_rank_fields(client: TestClient, fake_reranker: Reranker) -> None:
    objects = [{"text": d, "id": i} for i, d in enumerate(DOCS)]
    data = client.post("/v1/rerank", json={"query": QUERY, "documents": objects}).json()
    by_index = {r["index"]: r["relevance_score"] for r in data["results"]}
    np.testing.assert_allclose([by_index[i] for i in range(len(DOCS))], expected(fake_reranker, DOCS), rtol=1e-6)
    assert "document" not in data["results"][0]
    fields = [{"title": d, "brand": "Crocs"} for d in DOCS]
    data = client.post("/v2/rerank", json={"query": QUERY, "documents": fields,
                                           "rank_fields": ["brand", "title"], "return_documents": True}).json()
    texts = [f"brand: Crocs\ntitle: {d}" for d in DOCS]
    by_index = {r["index"]: r["relevance_score"] for r in data["results"]}
    np.testing.assert_allclose([by_index[i] for i in range(len(DOCS))], expected(fake_reranker, texts), rtol=1e-6)
    assert data["results"][0]["document"] == fields[data["results"][0]["index"]]


def test_cohere_max_chunks_scores_windows(client: TestClient, fake_reranker: Reranker) -> None:
    long_doc = " ".join(f"filler{i}" for i in range(800)) + " crocs clog"
    docs = [long_doc, DOCS[0]]
    data = client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "max_chunks_per_doc": 10}).json()
    by_index = {r["index"]: r["relevance_score"] for r in data["results"]}
    want = fake_reranker.score(QUERY, docs, long_documents="window", max_windows=10)
    np.testing.assert_allclose([by_index[0], by_index[1]], want, rtol=1e-6)


def test_cohere_max_tokens_per_doc_cuts_each_document(client: TestClient, fake_reranker: Reranker) -> None:
    docs = ["crocs clog " * 50, DOCS[0]]
    data = client.post("/v2/rerank", json={"query": QUERY, "documents": docs, "max_tokens_per_doc": 4}).json()
    by_index = {r["index"]: r["relevance_score"] for r in data["results"]}
    want = fake_reranker.score(QUERY, fake_reranker.tokenizer.cut_texts(docs, 4))
    assert not np.allclose(want, fake_reranker.score(QUERY, docs))  # the cut changed the scores
    np.testing.assert_allclose([by_index[0], by_index[1]], want, rtol=1e-6)
    assert_error(client.post("/v2/rerank", json={"query": QUERY, "documents": docs, "max_tokens_per_doc": 0}), 422)


def test_tei_truncate_false_refuses_inputs_that_do_not_fit(client: TestClient, fake_reranker: Reranker) -> None:
    long_doc = "word " * (fake_reranker.max_length + 10)
    refused = client.post("/rerank", json={"query": QUERY, "texts": [DOCS[0], long_doc], "truncate": False})
    body = assert_error(refused, 413)
    assert "[1]" in body["error"]["message"] and "truncate" in body["error"]["message"]
    assert client.post("/rerank", json={"query": QUERY, "texts": [DOCS[0]], "truncate": False}).status_code == 200
    assert client.post("/rerank", json={"query": QUERY, "texts": [long_doc], "truncate": True}).status_code == 200
    assert client.post("/rerank", json={"query": QUERY, "texts": [long_doc]}).status_code == 200


def test_tei_embed_truncate_false_refuses_inputs_that_do_not_fit(client: TestClient, minilm_encoder: Encoder) -> None:
    long_text = "word " * (minilm_encoder.max_length + 10)
    body = assert_error(client.post("/embed", json={"inputs": ["a clog", long_text], "truncate": False}), 413)
    assert "[1]" in body["error"]["message"] and f"{minilm_encoder.max_length} tokens" in body["error"]["message"]
    fits = client.post("/embed", json={"inputs": ["a clog"], "truncate": False})
    assert fits.status_code == 200 and len(fits.json()) == 1
    for cut in ({"truncate": True}, {}):
        assert len(client.post("/embed", json={"inputs": [long_text], **cut}).json()) == 1


def test_tei_rerank(client: TestClient, fake_reranker: Reranker) -> None:
    data = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True}).json()
    assert isinstance(data, list)
    raw = expected(fake_reranker, DOCS, activation="none")
    order = list(np.argsort(-raw, kind="stable"))
    assert [r["index"] for r in data] == order
    np.testing.assert_allclose([r["score"] for r in data], raw[order], rtol=1e-6)
    assert [r["text"] for r in data] == [DOCS[i] for i in order]
    plain = client.post("/rerank", json={"query": QUERY, "texts": DOCS}).json()
    assert "text" not in plain[0] and 0 < plain[0]["score"] < 1
    left = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "truncation_direction": "Left"})
    assert_error(left, 422, "invalid_input")


def test_rerank_path_tells_weaviate_from_cohere(client: TestClient, fake_reranker: Reranker) -> None:
    scores = expected(fake_reranker, DOCS)
    weaviate = client.post("/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert weaviate["query"] == QUERY
    assert [s["document"] for s in weaviate["scores"]] == DOCS  # input order
    np.testing.assert_allclose([s["score"] for s in weaviate["scores"]], scores, rtol=1e-6)
    cohere = client.post("/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 2}).json()
    assert [r["index"] for r in cohere["results"]] == list(np.argsort(-scores, kind="stable")[:2])


def test_embeddings_tei_and_openai(client: TestClient, minilm_encoder: Encoder) -> None:
    want = minilm_encoder.embed(DOCS)
    unit = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(client.post("/embed", json={"inputs": DOCS}).json(), unit, atol=1e-5)
    one = client.post("/embed", json={"inputs": DOCS[0]}).json()
    assert len(one) == 1 and len(one[0]) == 384
    data = client.post("/v1/embeddings", json={"input": DOCS, "model": "minilm"}).json()
    assert data["object"] == "list" and [d["index"] for d in data["data"]] == list(range(len(DOCS)))
    np.testing.assert_allclose([d["embedding"] for d in data["data"]], want, atol=1e-5)
    packed = client.post("/v1/embeddings", json={"input": DOCS[1], "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, want[1], atol=1e-5)
    assert_error(client.post("/v1/embeddings", json={"input": "x", "dimensions": 12}), 422)


def test_info_health_meta_models(client: TestClient) -> None:
    info = client.get("/info").json()
    assert info["model_type"]["reranker"] and info["max_input_length"] == 512
    assert client.get("/health").status_code == 200
    assert client.get("/.well-known/ready").status_code == 204
    assert client.get("/.well-known/live").status_code == 204
    assert client.get("/meta").json()["model"]["served_as"] == "msmarco"
    described = client.get("/models").json()["models"]
    names = {m["name"]: m["type"] for m in described}
    assert names == {"msmarco": "cross-encoder", "xlmr": "cross-encoder", "minilm": "bi-encoder"}
    msmarco = next(m for m in described if m["name"] == "msmarco")
    assert (msmarco["mode"], msmarco["runtime"], msmarco["precision"]) == ("exact", "onnxruntime", "f32")
    assert msmarco["providers"] == ["FakeExecutionProvider"]  # as its runtime reports them
    xlmr = next(m for m in described if m["name"] == "xlmr")
    assert xlmr["providers"] == ["CPUExecutionProvider"]


def test_metrics_count_requests_batches_and_truncation(client: TestClient) -> None:
    long_doc = "clog " * 2000
    client.post("/inference/cross/msmarco", json={"input": [{"query": QUERY, "text": long_doc}]})
    client.post("/inference/cross/nope", json={"input": []})
    text = client.get("/metrics").text
    for name in ("crossrank_requests_total", "crossrank_request_seconds_bucket", "crossrank_batch_rows_bucket",
                 "crossrank_batch_tokens_total", "crossrank_queue_depth", "crossrank_pairs_total"):
        assert name in text
    assert 'crossrank_truncated_pairs_total{model="msmarco"}' in text
    assert 'crossrank_errors_total{type="model_not_found"}' in text


def test_openapi_lists_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/inference/cross/{name}", "/inference/encoder/{name}", "/v1/rerank", "/v2/rerank", "/rerank",
                 "/embed", "/info", "/health", "/meta", "/.well-known/ready", "/v1/embeddings", "/models"):
        assert path in paths


def test_openapi_documents_the_search_request(client: TestClient) -> None:
    """``/search``'s request body is in the OpenAPI document, with every field it accepts."""
    from crossrank.server import search
    from crossrank.server.app import DEFAULT_ROUTERS, create_app

    state = client.app.state  # type: ignore[attr-defined]
    spec = create_app(state.models, state.settings, routers=(*DEFAULT_ROUTERS, search.build_router)).openapi()
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert {"query", "index", "retriever", "candidates", "top_k", "rerank", "model", "instruction",
            "filter"} <= set(schema["properties"]) and schema["required"] == ["query"]
    assert schema["additionalProperties"] is False


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/v1/rerank", b"{not json", 400),
        ("/rerank", b"{not json", 400),
        ("/v1/rerank", b'{"query": "\xff\xfe", "documents": ["a"]}', 400),  # invalid UTF-8
        ("/rerank", b'{"query": "\xff", "texts": ["a"]}', 400),
        ("/v1/rerank", {"query": QUERY}, 422),  # missing documents
        ("/v1/rerank", {"query": 3, "documents": ["a"]}, 422),
        ("/v1/rerank", {"query": QUERY, "documents": "one string"}, 422),
        ("/v1/rerank", {"query": QUERY, "documents": [None, "a"]}, 422),
        ("/v1/rerank", {"query": QUERY, "documents": [{"title": "no text"}]}, 422),
        ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": -1}, 422),
        ("/v2/rerank", {"query": "  ", "documents": ["a"]}, 422),  # empty query
        ("/rerank", {"query": QUERY, "texts": [1, 2]}, 422),
        ("/rerank", [1, 2], 422),
        ("/rerank", {"query": QUERY}, 422),
        ("/inference/cross/msmarco", {"input": [{"query": QUERY}]}, 422),
        ("/inference/cross/msmarco", {"input": [{"query": "", "text": "a"}]}, 422),
        ("/inference/encoder/minilm", {"texts": [None]}, 422),
        ("/embed", {"inputs": 5}, 422),
        ("/v1/embeddings", {"input": [[1, "a"]]}, 422),  # token ids are ints
        # JSON may escape a lone UTF-16 surrogate (half an emoji); it is not Unicode text
        ("/v1/rerank", b'{"query": "crocs", "documents": ["ok", "half \\ud83d"]}', 422),
        ("/rerank", b'{"query": "crocs", "texts": ["\\ude00"]}', 422),
        ("/inference/cross/msmarco", b'{"input": [{"query": "\\ud800", "text": "a"}]}', 422),
        ("/embed", b'{"inputs": ["\\udbff"]}', 422),
        ("/v1/rerank", b'{"query": "crocs", "documents": [{"text": "a", "\\ud800": 1}]}', 422),  # in a key
        ("/rerank", b"[" * 100_000 + b"]" * 100_000, 400),  # nested deeper than a parser's stack
        ("/v1/rerank", b'{"query": "crocs", "documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ],
)
def test_malformed_requests_get_a_4xx_envelope(client: TestClient, path: str, body: Any, status: int) -> None:
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert_error(response, status)


def test_a_lone_surrogate_is_named_and_a_paired_one_is_an_emoji(client: TestClient,
                                                               fake_reranker: Reranker) -> None:
    body = b'{"query": "crocs", "documents": ["fine", {"text": "a clog \\ud83d"}]}'
    response = client.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
    message = assert_error(response, 422, "invalid_input")["error"]["message"]
    assert "body.documents[1].text" in message and "U+D83D" in message and "'a clog '" in message
    # Python's json.dumps escapes an emoji as a surrogate pair: that is valid text
    pair = json.dumps({"query": "crocs \U0001f40a", "documents": ["clog \U0001f45f", "boot"]}).encode()
    assert b"\\ud83d" in pair
    response = client.post("/v1/rerank", content=pair, headers={"content-type": "application/json"})
    scores = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    want = fake_reranker.score("crocs \U0001f40a", ["clog \U0001f45f", "boot"])
    assert np.allclose([scores[0], scores[1]], want, atol=1e-6)


def test_an_unexpected_error_is_answered_without_re_raising(app_client: TestClient,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Re-raised after its 500 (Starlette's default), an error makes the HTTP server drop the
    connection, failing the client's next keep-alive request; TestClient re-raises it instead."""

    def failing_router() -> APIRouter:
        router = APIRouter()

        @router.post("/boom")
        async def boom() -> None:
            raise RuntimeError("a secret detail")

        return router

    state = app_client.app.state  # type: ignore[attr-defined]
    app = create_app(state.models, state.settings, routers=(*DEFAULT_ROUTERS, failing_router))
    client = TestClient(app)  # no lifespan: closing it would stop the shared models
    body = assert_error(client.post("/boom"), 500, "internal")
    assert "secret" not in json.dumps(body)
    assert "a secret detail" in caplog.text
    assert 'crossrank_errors_total{type="internal"} 1.0' in client.get("/metrics").text


def test_empty_document_lists_answer_200_empty(client: TestClient) -> None:
    assert client.post("/v1/rerank", json={"query": QUERY, "documents": []}).json()["results"] == []
    assert client.post("/rerank", json={"query": QUERY, "texts": []}).json() == []
    assert client.post("/rerank", json={"query": QUERY, "documents": []}).json()["scores"] == []
    assert client.post("/inference/cross/msmarco", json={"input": []}).json()["scores"] == []
    assert client.post("/inference/encoder/minilm", json={"texts": []}).json()["embeddings"] == []


def test_unknown_model_names_and_paths_are_404_and_never_loaded(client: TestClient, bert2_dir: Path) -> None:
    body = assert_error(client.post("/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": ["a"]}),
                        404, "model_not_found")
    assert "msmarco" in body["error"]["message"] and "xlmr" in body["error"]["message"]
    for ref in (f"file://{bert2_dir}", str(bert2_dir), "/etc/passwd", "../../etc"):
        assert_error(client.post("/v1/rerank", json={"model": ref, "query": QUERY, "documents": ["a"]}), 404)
    assert_error(client.post("/inference/cross/minilm", json={"input": []}), 404)  # a bi-encoder
    assert_error(client.post("/inference/encoder/msmarco", json={"texts": ["a"]}), 404)
    names = {m["name"] for m in client.get("/models").json()["models"]}
    assert names == {"msmarco", "xlmr", "minilm"}


def test_size_limits_answer_413(client: TestClient) -> None:
    big = "x" * 2_100_000  # above this app's 2 MB body limit
    assert_error(client.post("/v1/rerank", json={"query": QUERY, "documents": [big]}), 413, "payload_too_large")
    many = {"query": QUERY, "documents": ["d"] * 1001}  # above max_documents
    assert "1000" in assert_error(client.post("/v1/rerank", json=many), 413)["error"]["message"]
    set_settings(client, max_documents=100_000, max_body_bytes=10 * 1024 * 1024)
    huge = "crocs clog " * 400_000  # a 4.4 MB document under a 10 MB limit: cut to the model limit
    response = client.post("/rerank", json={"query": QUERY, "texts": [huge]})
    assert response.status_code == 200 and len(response.json()) == 1


def test_hundred_thousand_documents_are_refused_with_413_by_default(client: TestClient) -> None:
    set_settings(client, max_documents=ServerSettings().max_documents, max_body_bytes=10 * 1024 * 1024)
    body = {"query": QUERY, "documents": ["d"] * 100_000}
    assert_error(client.post("/v1/rerank", json=body), 413, "payload_too_large")


def test_deadline_header(client: TestClient) -> None:
    body = {"query": QUERY, "documents": DOCS * 100}
    assert_error(client.post("/v1/rerank", json=body, headers={"X-Request-Timeout": "soon"}), 422)
    response = client.post("/v1/rerank", json=body, headers={"X-Request-Timeout": "0.000001"})
    assert_error(response, 504, "deadline_exceeded")
    ok = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}, headers={"X-Request-Timeout": "60"})
    assert ok.status_code == 200


def test_api_key(client: TestClient) -> None:
    set_settings(client, api_key="s3cret")
    body = {"query": QUERY, "documents": DOCS}
    response = client.post("/v2/rerank", json=body)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(client.post("/v2/rerank", json=body, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.post("/rerank", json={"query": QUERY, "texts": DOCS},
                             headers={"Authorization": "Basic s3cret"}), 401)
    assert client.post("/v2/rerank", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    for open_path in ("/health", "/.well-known/ready", "/.well-known/live", "/metrics"):
        assert client.get(open_path).status_code in (200, 204)
    for protected in ("/inference/cross/msmarco", "/inference/encoder/minilm", "/v1/rerank", "/embed",
                      "/v1/embeddings"):
        assert client.post(protected, json={}).status_code == 401


def test_every_error_is_json(client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404)
    assert_error(client.get("/v1/rerank"), 405)
    response = client.post("/v1/rerank", content=json.dumps({"query": QUERY, "documents": DOCS}),
                           headers={"content-type": "text/plain"})
    assert response.status_code == 200  # bodies are read as JSON whatever their label


# -- the request gate: strict bodies, the key before the body, HEAD, no redirects ----------------
def post_raw(client: TestClient, path: str, body: bytes, **headers: str) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"query": "crocs", "documents": ["clog \xed\xa0\x80", "boot"]}', "not valid UTF-8"),  # a raw surrogate
        (b'{"query": "crocs", "documents": ["clog \xff"]}', "not valid UTF-8"),
        ('{"query": "crocs", "documents": ["clog"]}'.encode("utf-16"), "UTF-16"),
        ('{"query": "crocs", "documents": ["clog"]}'.encode("utf-16-le"), "UTF-16"),
        (b'{"query": "crocs", "documents": [{"text": "clog", "x": NaN}], "return_documents": true}', "NaN"),
        (b'{"query": "crocs", "documents": ["clog"], "top_n": Infinity}', "Infinity"),
        (b'{"query": "crocs", "documents": [{"text": "clog", "x": 1e999}], "return_documents": true}', "1e999"),
        (b'{"query": "crocs", "documents": ["clog"], "top_n": ' + b"9" * 5000 + b"}", "too many digits"),
        (b'{"query": "crocs", "documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"query": "crocs", "documents": ["clog",]}', "not valid JSON"),
    ],
    ids=["raw surrogate", "invalid UTF-8", "UTF-16 BOM", "UTF-16", "NaN", "Infinity", "1e999", "5000 digits",
         "deep nesting", "bad JSON"],
)
def test_a_body_that_is_not_strict_utf8_json_is_a_400_that_says_what_is_wrong(client: TestClient, body: bytes,
                                                                              says: str) -> None:
    for path in ("/v1/rerank", "/rerank"):
        message = assert_error(post_raw(client, path, body), 400, "invalid_input")["error"]["message"]
        assert says in message, message
        if says not in ("not valid UTF-8", "UTF-16"):
            assert "UTF-8" not in message, message  # the reason given is the real one


def test_a_raw_surrogate_is_refused_on_every_post_route_before_it_is_batched(client: TestClient) -> None:
    bodies = {"/inference/cross/msmarco": b'{"input": [{"query": "q", "text": "\xed\xa0\x80"}]}',
              "/inference/encoder/minilm": b'{"texts": ["\xed\xa0\x80"]}',
              "/v1/rerank": b'{"query": "q", "documents": [{"text": "\xed\xa0\x80"}], "return_documents": true}',
              "/v2/rerank": b'{"query": "q", "documents": ["\xed\xa0\x80"]}',
              "/rerank": b'{"query": "q", "texts": ["\xed\xa0\x80"], "return_text": true}',
              "/embed": b'{"inputs": ["a", "\xed\xa0\x80"]}',
              "/v1/embeddings": b'{"input": "\xed\xa0\x80"}'}
    for path, body in bodies.items():
        message = assert_error(post_raw(client, path, body), 400)["error"]["message"]
        assert "UTF-16 surrogate" in message, (path, message)


def test_one_clients_bad_bytes_fail_only_its_own_request(client: TestClient, minilm_encoder: Encoder) -> None:
    """A body with a raw surrogate used to pass the gate and fail the whole batch it joined,
    with other clients' requests answered by a message quoting its text."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"innocent text number {i}" for i in range(24)]

    def good(i: int) -> Any:
        if i % 2:
            return client.post("/embed", json={"inputs": [texts[i]]})
        return client.post("/v1/embeddings", json={"input": [texts[i]]})

    def bad(i: int) -> Any:
        return post_raw(client, "/embed" if i % 2 else "/v1/embeddings", b'{"input": ["secret \xed\xa0\x80"], '
                        b'"inputs": ["secret \xed\xa0\x80"]}')

    with ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(good, i) for i in range(len(texts))]
        bads = [pool.submit(bad, i) for i in range(8)]
        good_answers = [f.result() for f in goods]
        bad_answers = [f.result() for f in bads]
    assert [r.status_code for r in good_answers] == [200] * len(texts)
    for response in bad_answers:
        message = assert_error(response, 400)["error"]["message"]
        assert "innocent" not in message and "secret" not in message


def test_the_key_is_checked_before_the_body_is_read_or_parsed(client: TestClient) -> None:
    """A keyless request used to have its body read, held and parsed first (400 for bad JSON,
    413 for a large one): the key decides first, from the headers."""
    set_settings(client, api_key="s3cret")
    for body in (b"{not json", b'{"query": "q", "documents": ["\xed\xa0\x80"]}', b'{"query": "\\ud800"}',
                 b'{"query": "q", "documents": ["x"], "top_n": NaN}'):
        assert_error(post_raw(client, "/v1/rerank", body), 401, "unauthorized")
        assert_error(post_raw(client, "/rerank", body, authorization="Bearer wrong"), 401, "unauthorized")
    big = b'{"query": "q", "texts": ["' + b"x" * 2_100_000 + b'"]}'  # past the 2 MB body limit
    assert_error(post_raw(client, "/rerank", big), 401, "unauthorized")
    assert_error(post_raw(client, "/rerank", big, authorization="Bearer s3cret"), 413, "payload_too_large")
    assert_error(post_raw(client, "/v1/rerank", b"{not json", authorization="Bearer s3cret"), 400)
    assert client.get("/health").status_code == 200  # open routes stay open
    assert client.head("/info").status_code == 200


def test_head_is_answered_wherever_get_is(client: TestClient) -> None:
    for path in ("/health", "/info", "/models", "/metrics", "/meta", "/openapi.json", "/.well-known/live"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code and head.status_code in (200, 204), (path, head.status_code)
        assert head.content == b""
        assert head.headers.get("content-type") == got.headers.get("content-type")
    assert_error(client.get("/v1/rerank"), 405)
    assert client.head("/v1/rerank").status_code == 405


@pytest.mark.parametrize("key", [None, "s3cret"])
def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_clients_host(client: TestClient, key: str | None) -> None:
    set_settings(client, api_key=key)
    for method, path in (("POST", "/v1/rerank/"), ("POST", "/rerank/"), ("GET", "/health/"), ("GET", "/info/")):
        response = client.request(method, path, json={"query": QUERY, "documents": DOCS},
                                  headers={"host": "attacker.example"}, follow_redirects=False)
        assert_error(response, 404, "not_found")
        assert "location" not in response.headers


def test_decode_json_takes_what_json_over_http_allows() -> None:
    from crossrank.errors import InvalidInput, MalformedBody
    from crossrank.server.body import decode_json

    assert decode_json(b'\xef\xbb\xbf{"a": "clog \\ud83d\\udc5f"}') == {"a": "clog \U0001f45f"}  # BOM, paired escape
    assert decode_json(b'{"n": ' + str(10**400).encode() + b', "x": 1.5e300}') == {"n": 10**400, "x": 1.5e300}
    assert decode_json("{\"a\": \"caf\u00e9 \U0001f40a\"}".encode()) == {"a": "caf\u00e9 \U0001f40a"}
    for bad in (b'{"a": -Infinity}', b'{"a": -1e400}', b"\xfe\xff\x00{\x00}", b"\xed\xb0\x80"):
        with pytest.raises(MalformedBody):
            decode_json(bad)
    with pytest.raises(InvalidInput, match=r"body\.a\[1\]"):
        decode_json(b'{"a": ["ok", "\\udc00"]}')
