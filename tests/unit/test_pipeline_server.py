"""``POST /search`` on the server: configured indexes, reranking through the served model, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Encoder, Reranker
from crossrank.errors import InvalidInput
from crossrank.retrieval import Index, Pipeline, Record, SearchResult, build_index
from crossrank.retrieval.pipeline import SearchRun

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models  # noqa: E402
from crossrank.server.app import DEFAULT_ROUTERS  # noqa: E402
from crossrank.server.search import (  # noqa: E402
    SearchIndex,
    build_router,
    open_search_indexes,
    parse_entry,
    read_search_config,
)

DOCS = [
    "Crocs Kids' Baya Clog",
    "Leather hiking boots for men",
    "Kids sandals for the summer",
    "Garden clog, green rubber",
    "Wool socks for winter boots",
]


def _served(client: TestClient) -> dict[str, SearchIndex]:
    """The app's opened search indexes."""
    app = client.app
    assert isinstance(app, FastAPI)
    served: dict[str, SearchIndex] = app.state.search
    return served


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path, model_cache: Path,
           minilm_encoder: Encoder, minilm_dir: Path) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("search-server")
    build_index(root / "shoes.idx", [Record(f"s{i}", t) for i, t in enumerate(DOCS)], encoder=minilm_encoder,
                encoder_model=str(minilm_dir))
    build_index(root / "plain.idx", [Record("x", "just words about clogs")])
    config = root / "config.yaml"
    config.write_text(
        f"inference:\n  ce:\n    type: cross-encoder\n    model: {bert_dir}\n"
        f"search:\n  shoes:\n    index: {root / 'shoes.idx'}\n    retriever: hybrid\n    candidates: 4\n"
        f"  plain:\n    index: {root / 'plain.idx'}\n    reranker: null\n"
    )
    entries = read_search_config(config)
    assert [e.name for e in entries] == ["shoes", "plain"]
    settings = ServerSettings(cache_dir=str(model_cache))
    models = load_served_models([ModelEntry(name="ce", type="cross-encoder", model=str(bert_dir))], settings)
    app = create_app(models, settings, routers=(*DEFAULT_ROUTERS, build_router))
    app.state.search = open_search_indexes(entries)
    with TestClient(app) as test_client:
        yield test_client


def test_search_reranks_configured_index(client: TestClient, bert_reranker: Reranker) -> None:
    response = client.post("/search", json={"query": "clog for kids", "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["index"], body["retriever"], body["reranker"], body["candidates"]) == ("shoes", "hybrid", "ce", 4)
    found = Index.open(_served(client)["shoes"].index.path).retriever("hybrid").retrieve("clog for kids", 4)
    scores = bert_reranker.score("clog for kids", [c.text for c in found])
    order = np.argsort(-scores, kind="stable")[:3]
    assert [h["id"] for h in body["hits"]] == [found[i].id for i in order]
    assert [h["rerank_score"] for h in body["hits"]] == pytest.approx([float(scores[i]) for i in order], abs=1e-6)
    assert [h["first_stage_rank"] for h in body["hits"]] == [found[i].rank for i in order]
    assert set(body["timings_ms"]) == {"retrieve", "rerank", "total"}


def test_the_route_and_the_library_pipeline_run_one_implementation(
    client: TestClient, bert_reranker: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[str] = []
    result = SearchRun.result

    def counted(self: SearchRun, *args: Any, **kwargs: Any) -> SearchResult:
        runs.append(self.query)
        return result(self, *args, **kwargs)

    monkeypatch.setattr(SearchRun, "result", counted)
    served = client.post("/search", json={"query": "clog for kids", "retriever": "bm25", "top_k": 3}).json()
    index = Index.open(_served(client)["shoes"].index.path)
    try:
        local = Pipeline(index.retriever("bm25"), bert_reranker).search("clog for kids", candidates=4, top_k=3)
    finally:
        index.close()
    assert runs == ["clog for kids", "clog for kids"]  # both went through SearchRun
    hits = [h.to_dict() for h in local.hits]
    assert [(h["id"], h["rank"], h["first_stage_rank"]) for h in served["hits"]] == [
        (h["id"], h["rank"], h["first_stage_rank"]) for h in hits]
    assert [h["rerank_score"] for h in served["hits"]] == pytest.approx([h["rerank_score"] for h in hits], abs=1e-6)
    assert served["candidates"] == local.candidates == 4


def test_search_options_and_unreranked_index(client: TestClient) -> None:
    body = client.post("/search", json={"query": "boots", "retriever": "bm25", "rerank": False, "top_k": 2}).json()
    assert body["reranker"] is None and all(h["rerank_score"] is None for h in body["hits"])
    assert [h["first_stage_rank"] for h in body["hits"]] == [1, 2]
    plain = client.post("/search", json={"query": "clogs", "index": "plain"}).json()
    assert plain["reranker"] is None and plain["hits"][0]["id"] == "x"


@pytest.mark.parametrize(("body", "status"), [
    ({"query": "x", "index": "nope"}, 404),
    ({"query": "x", "index": "plain", "retriever": "dense"}, 422),
    ({"query": "x", "retriever": "sparse"}, 422),
    ({"query": ""}, 422),
    ({"query": "x", "candidates": 0}, 422),
    ({"query": "x", "model": "not-served"}, 404),
    ({"text": "x"}, 422),
])
def test_search_errors_are_json(client: TestClient, body: dict[str, object], status: int) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_config_entries_are_checked(tmp_path: Path) -> None:
    assert parse_entry("a", "/some/path").index == "/some/path"
    with pytest.raises(InvalidInput, match="unknown keys"):
        parse_entry("a", {"index": "/x", "colour": "red"})
    with pytest.raises(InvalidInput, match="retriever"):
        parse_entry("a", {"index": "/x", "retriever": "sparse"})
    with pytest.raises(InvalidInput, match="positive integer"):
        parse_entry("a", {"index": "/x", "candidates": "many"})
    with pytest.raises(InvalidInput, match="no index at"):
        open_search_indexes([parse_entry("a", str(tmp_path / "missing.idx"))])


@pytest.mark.integration  # starts a process
def test_serve_command_answers_search(tmp_path: Path, bert_dir: Path, model_cache: Path) -> None:
    import httpx

    from crossrank.server.launch import ServerProcess

    build_index(tmp_path / "docs.idx", [Record("a", "clogs for kids"), Record("b", "leather boots")])
    config = tmp_path / "config.yaml"
    config.write_text(f"inference:\n  ce:\n    type: cross-encoder\n    model: {bert_dir}\n"
                      f"search:\n  docs: {tmp_path / 'docs.idx'}\n")
    with ServerProcess(["--config", str(config)], env={"HF_HOME": str(model_cache.parent / "hf-serve")},
                       log_path=tmp_path / "serve.log") as server:
        response = httpx.post(f"{server.url}/search", json={"query": "clogs"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["index"] == "docs" and body["reranker"] == "ce" and body["hits"][0]["id"] == "a"


def _bm25_app(tmp_path: Path, bert_dir: Path, model_cache: Path) -> tuple[TestClient, Path]:
    path = tmp_path / "live.idx"
    build_index(path, [Record("old", "clogs for kids")])
    entries = [parse_entry("live", {"index": str(path), "reranker": None})]
    settings = ServerSettings(cache_dir=str(model_cache))
    models = load_served_models([ModelEntry(name="ce", type="cross-encoder", model=str(bert_dir))], settings)
    app = create_app(models, settings, routers=(*DEFAULT_ROUTERS, build_router))
    app.state.search = open_search_indexes(entries)
    return TestClient(app), path


def test_the_server_follows_a_rebuild_and_closes_the_old_generation(
    tmp_path: Path, bert_dir: Path, model_cache: Path
) -> None:
    client, path = _bm25_app(tmp_path, bert_dir, model_cache)
    with client:
        assert [h["id"] for h in client.post("/search", json={"query": "clogs"}).json()["hits"]] == ["old"]
        served = _served(client)["live"]
        old = served.index
        build_index(path, [Record("new", "clogs for adults"), Record("new2", "more clogs")])
        hits = client.post("/search", json={"query": "clogs"}).json()["hits"]
        assert sorted(h["id"] for h in hits) == ["new", "new2"]  # no restart needed
        assert served.index is not old and old.docs._fd == -1  # the deleted generation's files are closed
        build_index(path, [Record("third", "clogs")], mode="add")
        assert len(client.post("/search", json={"query": "clogs"}).json()["hits"]) == 3


def test_a_broken_new_generation_leaves_the_old_one_answering(
    tmp_path: Path, bert_dir: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, path = _bm25_app(tmp_path, bert_dir, model_cache)
    with client:
        assert client.post("/search", json={"query": "clogs"}).status_code == 200
        (path / "gen-000099").mkdir()  # a generation without its files, published by hand
        (path / "CURRENT").write_text("gen-000099\n")
        with caplog.at_level("WARNING"):
            response = client.post("/search", json={"query": "clogs"})
        assert response.status_code == 200 and response.json()["hits"][0]["id"] == "old"
        assert "cannot be used" in caplog.text


def test_unknown_reranker_names_are_refused_at_startup() -> None:
    from crossrank.server.search import check_rerankers

    served = [("ce", "cross-encoder/ms-marco-MiniLM-L6-v2")]
    check_rerankers([parse_entry("a", {"index": "/x", "reranker": "ce"}),
                     parse_entry("b", {"index": "/x", "reranker": "cross-encoder/ms-marco-MiniLM-L6-v2"}),
                     parse_entry("c", {"index": "/x", "reranker": None}), parse_entry("d", "/x")], served)
    with pytest.raises(InvalidInput, match=r"search.a.reranker 'msmacro' is not a cross-encoder.*known: \['ce'\]"):
        check_rerankers([parse_entry("a", {"index": "/x", "reranker": "msmacro"})], served)
    with pytest.raises(InvalidInput, match="serves none"):
        check_rerankers([parse_entry("a", "/x")], [])


def test_the_serve_command_refuses_an_unknown_reranker_before_loading(tmp_path: Path, bert_dir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from crossrank.cli import main

    build_index(tmp_path / "docs.idx", [Record("a", "clogs for kids")])
    config = tmp_path / "config.yaml"
    config.write_text(f"inference:\n  ce:\n    type: cross-encoder\n    model: {tmp_path / 'not-loaded'}\n"
                      f"search:\n  docs:\n    index: {tmp_path / 'docs.idx'}\n    reranker: cee\n")
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "search.docs.reranker 'cee' is not a cross-encoder" in capsys.readouterr().err


def test_a_dense_index_reuses_the_served_encoder_or_loads_into_the_cache_dir(
    tmp_path: Path, minilm_encoder: Encoder, minilm_dir: Path, isolated_hf_home: Path
) -> None:
    build_index(tmp_path / "d.idx", [Record(f"s{i}", t) for i, t in enumerate(DOCS)], encoder=minilm_encoder,
                encoder_model=str(minilm_dir))
    entries = [parse_entry("d", {"index": str(tmp_path / "d.idx"), "retriever": "dense"})]
    reused = open_search_indexes(entries, served=[(f"file://{minilm_dir}", minilm_encoder)])
    assert reused["d"].encoder is minilm_encoder
    cache = tmp_path / "cache"
    isolated_hf_home.mkdir()
    isolated_hf_home.chmod(0o500)  # a read-only HF_HOME: nothing may be written there
    try:
        opened = open_search_indexes(entries, cache_dir=cache)
    finally:
        isolated_hf_home.chmod(0o700)
    assert opened["d"].encoder is not None and list(cache.rglob("*.onnx")) and not list(isolated_hf_home.rglob("*"))
    assert opened["d"].retrieve("dense", "clog for kids", 2)[0].id in {"s0", "s3"}


def test_an_index_damaged_while_served_is_a_500_that_hides_its_paths(
    tmp_path: Path, bert_dir: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, path = _bm25_app(tmp_path, bert_dir, model_cache)
    with client:
        assert client.post("/search", json={"query": "clogs"}).status_code == 200
        docs = next(path.glob("gen-*")) / "docs.jsonl"
        docs.write_bytes(b"\xff" * docs.stat().st_size)  # the open store now reads garbage
        with caplog.at_level("ERROR"):
            response = client.post("/search", json={"query": "clogs"})
    assert response.status_code == 500, response.text  # the server's storage failed, not the request
    error = response.json()["error"]
    assert error["type"] == "index_corrupt" and str(tmp_path) not in response.text
    assert "corrupt" in caplog.text and str(path) in caplog.text  # the operator reads the details in the log
