"""Per-request instructions of LLM rerankers: the library call, the scheduler, every wire format,
the server config's default per model, and the instruction and truncation made visible.

A tiny random Qwen3-Reranker (its weights large enough that the instruction moves the scores)
and the tiny BERT cross-encoder, whose head reads no instruction.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import InvalidInput, ModelError, Reranker
from crossrank.models.synthetic import build_qwen3_reranker
from crossrank.retrieval import Record, build_index
from crossrank.scheduler import BatchSettings, CrossScheduler

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from crossrank.cli import main  # noqa: E402
from crossrank.server import ModelEntry, ServerSettings, create_app, load_served_models  # noqa: E402
from crossrank.server.app import DEFAULT_ROUTERS  # noqa: E402
from crossrank.server.config import model_entry, read_config  # noqa: E402
from crossrank.server.search import build_router as search_router  # noqa: E402
from crossrank.server.search import open_search_indexes, parse_entry  # noqa: E402

QUERY = "shoes for rain"
DOCS = ["Waterproof rubber shoes", "Crocs Kids' Baya Clog shoes", "lemon cake in the rain", "wool socks for rain",
        "rain"]  # each holds a word of the query, so that the search's first stage finds them all
CONFIGURED = "Given a product search query, retrieve products that match it"  # the server's default
ASKED = "Find shoes that keep feet dry in the rain"  # a request's own
TOO_LONG = "keep the feet dry " * 20  # with the query, past the room that max_length 192 leaves them
MAX_LENGTH = 192


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_qwen3_reranker(tmp_path_factory.mktemp("qwen3-instruction"), initializer_range=0.2)


@pytest.fixture(scope="module")
def library(qwen3: Path, model_cache: Path) -> Reranker:
    """The library's reranker, configured as the server's model is."""
    return Reranker(qwen3, cache_dir=model_cache, max_length=MAX_LENGTH, instruction=CONFIGURED)


def scores_of(reranker: Reranker, instruction: str | None = None, docs: list[str] = DOCS) -> np.ndarray:
    return reranker.score_details([(QUERY, d) for d in docs], instruction=instruction).values


# -- the library ------------------------------------------------------------------------------
def test_a_call_instruction_scores_as_a_reranker_made_with_it(qwen3: Path, model_cache: Path,
                                                             library: Reranker) -> None:
    made_with = Reranker(qwen3, cache_dir=model_cache, max_length=MAX_LENGTH, instruction=ASKED)
    asked = library.score_details([(QUERY, d) for d in DOCS], instruction=ASKED)
    np.testing.assert_allclose(asked.values, scores_of(made_with), rtol=0, atol=1e-9)
    assert np.abs(asked.values - scores_of(library)).max() > 1e-3  # the instruction is in the prompt
    assert asked.instruction == ASKED and library.score_details([(QUERY, "x")]).instruction == CONFIGURED
    assert [r.index for r in library.rank(QUERY, DOCS, instruction=ASKED)] == list(np.argsort(-asked.values,
                                                                                               kind="stable"))
    family = Reranker(qwen3, cache_dir=model_cache, max_length=MAX_LENGTH).score_details([(QUERY, "x")])
    assert family.instruction == "Given a web search query, retrieve relevant passages that answer the query"


def test_the_truncation_used_is_reported(library: Reranker, bert_reranker: Reranker) -> None:
    details = library.score_details([(QUERY, "rain boots " * 200)], long_documents="window", max_windows=2)
    assert details.truncation is not None and bool(details.truncated[0])
    assert (details.truncation.cut, details.truncation.max_length, details.truncation.side) == (
        "document only", MAX_LENGTH, "right")
    assert (details.truncation.long_documents, details.truncation.max_windows) == ("window", 2)
    plain = bert_reranker.score_details([(QUERY, "x")])
    assert plain.instruction is None and plain.truncation is not None
    assert plain.truncation.cut.startswith("document, and a query")


def test_the_score_cache_keys_on_the_instruction_used(qwen3: Path, model_cache: Path, library: Reranker) -> None:
    cached = Reranker(qwen3, cache_dir=model_cache, max_length=MAX_LENGTH, instruction=CONFIGURED, cache=100)
    first = scores_of(cached)
    np.testing.assert_allclose(scores_of(cached, ASKED), scores_of(library, ASKED), rtol=0, atol=1e-9)
    np.testing.assert_allclose(scores_of(cached), first, rtol=0, atol=0)


def test_a_head_that_reads_no_instruction_refuses_one_per_call(bert_reranker: Reranker) -> None:
    with pytest.raises(InvalidInput, match=r"takes no instruction[\s\S]*sequence-classification"):
        bert_reranker.score_details([(QUERY, "x")], instruction=ASKED)
    with pytest.raises(InvalidInput, match="takes no instruction"):
        bert_reranker.score_details([], instruction=ASKED)  # before any work, even for no pairs
    with pytest.raises(InvalidInput, match="instruction must be a string"):
        bert_reranker.rank(QUERY, DOCS, instruction=3)


def test_an_instruction_that_leaves_no_room_is_refused_per_call_with_token_counts(library: Reranker) -> None:
    scores_of(library)  # the default fits
    with pytest.raises(InvalidInput, match=rf"instruction and query take \d+ tokens[\s\S]*max_length {MAX_LENGTH} "
                       r"keeps at most \d+"):
        scores_of(library, TOO_LONG)
    with pytest.raises(InvalidInput, match="must not be empty"):
        scores_of(library, "  ")


def test_the_scheduler_scores_each_request_with_its_own_instruction(library: Reranker) -> None:
    """Requests with different instructions share batches; each row carries its own prompt."""
    batches: list[int] = []
    scheduler = CrossScheduler("q", library, BatchSettings(batch_size=64, lookahead=64),
                               observer=lambda rows, tokens, seconds: batches.append(rows))

    async def both() -> list[Any]:
        return list(await asyncio.gather(
            scheduler.score([(QUERY, d) for d in DOCS], instruction=ASKED),
            scheduler.score([(QUERY, d) for d in DOCS]),
            scheduler.score([(QUERY, d) for d in DOCS[:2]], instruction=CONFIGURED + " and are cheap"),
        ))

    try:
        asked, default, third = asyncio.run(both())
        with pytest.raises(InvalidInput, match="leaves|keeps at most"):
            asyncio.run(scheduler.score([(QUERY, "x")], instruction=TOO_LONG))
    finally:
        scheduler.close()
    np.testing.assert_allclose(asked.values, scores_of(library, ASKED), rtol=0, atol=1e-6)
    np.testing.assert_allclose(default.values, scores_of(library), rtol=0, atol=1e-6)
    np.testing.assert_allclose(third.values, scores_of(library, CONFIGURED + " and are cheap", DOCS[:2]),
                               rtol=0, atol=1e-6)
    assert (asked.instruction, default.instruction) == (ASKED, CONFIGURED)
    assert sum(batches) == 2 * len(DOCS) + 2


# -- the server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, qwen3: Path, bert_dir: Path,
           model_cache: Path) -> Iterator[TestClient]:
    """The LLM reranker first (the default of the formats that name no model), the BERT one second."""
    root = tmp_path_factory.mktemp("instruction-search")
    build_index(root / "shoes.idx", [Record(f"s{i}", text) for i, text in enumerate(DOCS)])
    settings = ServerSettings(cache_dir=str(model_cache))
    models = load_served_models(
        [model_entry("qwen", {"model": str(qwen3), "max_length": MAX_LENGTH, "instruction": CONFIGURED}),
         ModelEntry("msmarco", "cross-encoder", str(bert_dir))], settings)
    app = create_app(models, settings, routers=(*DEFAULT_ROUTERS, search_router))
    app.state.search = open_search_indexes([parse_entry("shoes", {"index": str(root / "shoes.idx"),
                                                                  "candidates": 20, "top_k": 20})])
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def bert_server(bert_dir: Path, model_cache: Path) -> Iterator[TestClient]:
    """A server whose default cross-encoder reads no instruction (for TEI and Weaviate, which name no model)."""
    settings = ServerSettings(cache_dir=str(model_cache))
    models = load_served_models([ModelEntry("msmarco", "cross-encoder", str(bert_dir))], settings)
    with TestClient(create_app(models, settings)) as client:
        yield client


def _by_index(results: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in sorted(results, key=lambda r: r["index"])]


#: each format: (path, body for the documents and extra fields, its scores in input order)
Format = tuple[str, Callable[[dict[str, Any]], dict[str, Any]], Callable[[Any], list[float]]]
FORMATS: dict[str, Format] = {
    "cohere-v1": ("/v1/rerank", lambda extra: {"model": "qwen", "query": QUERY, "documents": DOCS, **extra},
                  lambda body: _by_index(body["results"], "relevance_score")),
    "cohere-v2": ("/v2/rerank", lambda extra: {"model": "qwen", "query": QUERY, "documents": DOCS, **extra},
                  lambda body: _by_index(body["results"], "relevance_score")),
    "jina-on-rerank": ("/rerank", lambda extra: {"model": "qwen", "query": QUERY, "documents": DOCS, "top_n": 9,
                                                 **extra},
                       lambda body: _by_index(body["results"], "relevance_score")),
    "tei": ("/rerank", lambda extra: {"query": QUERY, "texts": DOCS, **extra},
            lambda body: _by_index(body, "score")),
    "weaviate": ("/rerank", lambda extra: {"query": QUERY, "documents": DOCS, **extra},
                 lambda body: [s["score"] for s in body["scores"]]),
    "metarank": ("/inference/cross/qwen", lambda extra: {"input": [{"query": QUERY, "text": d} for d in DOCS],
                                                         **extra},
                 lambda body: body["scores"]),
    "search": ("/search", lambda extra: {"query": QUERY, "model": "qwen", **extra},
               lambda body: [h["rerank_score"] for h in sorted(body["hits"], key=lambda h: DOCS.index(h["text"]))]),
}


def _expected(library: Reranker, name: str, body: Any, instruction: str | None) -> np.ndarray:
    docs = DOCS if name != "search" else sorted((h["text"] for h in body["hits"]), key=DOCS.index)
    assert len(docs) == len(DOCS)
    return scores_of(library, instruction, docs)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_takes_an_instruction_and_defaults_to_the_configured_one(
        server: TestClient, library: Reranker, name: str) -> None:
    path, make, read = FORMATS[name]
    asked = server.post(path, json=make({"instruction": ASKED}))
    assert asked.status_code == 200, asked.text
    default = server.post(path, json=make({}))
    assert default.status_code == 200, default.text
    want_asked, want_default = (_expected(library, name, r.json(), i) for r, i in ((asked, ASKED), (default, None)))
    np.testing.assert_allclose(read(asked.json()), want_asked, rtol=0, atol=1e-6)
    np.testing.assert_allclose(read(default.json()), want_default, rtol=0, atol=1e-6)
    assert np.abs(want_asked - want_default).max() > 1e-3


@pytest.mark.parametrize("name", list(FORMATS))
def test_an_instruction_for_a_model_that_reads_none_is_a_422_in_every_format(
        server: TestClient, bert_server: TestClient, name: str) -> None:
    path, make, _ = FORMATS[name]
    body = make({"instruction": ASKED})
    if "model" in body:
        body["model"] = "msmarco"
    client = server if name in ("cohere-v1", "cohere-v2", "jina-on-rerank", "search", "metarank") else bert_server
    response = client.post(path.replace("/qwen", "/msmarco"), json=body)
    assert response.status_code == 422, response.text
    assert "takes no instruction" in response.json()["error"]["message"]
    assert client.post(path.replace("/qwen", "/msmarco"), json={**body, "instruction": None}).status_code == 200


@pytest.mark.parametrize("name", list(FORMATS))
def test_an_instruction_that_leaves_the_document_no_room_is_a_422_with_token_counts(
        server: TestClient, name: str) -> None:
    path, make, _ = FORMATS[name]
    response = server.post(path, json=make({"instruction": TOO_LONG}))
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "instruction and query take" in message and f"max_length {MAX_LENGTH} keeps at most" in message
    for bad in (5, "", ["a"]):
        assert server.post(path, json=make({"instruction": bad})).status_code == 422


def test_info_and_models_show_the_template_instruction_and_truncation(server: TestClient) -> None:
    info = server.get("/info").json()
    assert info["max_input_length"] == MAX_LENGTH  # TEI's own fields stay
    models = {m["name"]: m for m in info["models"]}
    assert models == {m["name"]: m for m in server.get("/models").json()["models"]}
    qwen, bert = models["qwen"], models["msmarco"]
    assert (qwen["template"], qwen["instruction"], qwen["max_length"]) == ("qwen3-reranker", CONFIGURED, MAX_LENGTH)
    assert qwen["truncation"]["cut"] == "document only" and qwen["truncation"]["side"] == "right"
    assert (bert["template"], bert["instruction"]) == (None, None)
    assert bert["truncation"]["cut"].startswith("document, and a query") and "sequence-classification" in bert["head"]
    assert server.get("/meta").json()["model"]["instruction"] == CONFIGURED


def test_cohere_meta_and_search_report_the_instruction_and_truncation_used(server: TestClient) -> None:
    meta = server.post("/v2/rerank", json={"model": "qwen", "query": QUERY, "documents": DOCS,
                                           "instruction": ASKED}).json()["meta"]
    assert meta["api_version"] == {"version": "2"} and meta["instruction"] == ASKED
    assert meta["truncation"]["cut"] == "document only" and meta["truncated_documents"] == 0
    plain = server.post("/v1/rerank", json={"model": "qwen", "query": QUERY, "documents": DOCS}).json()["meta"]
    assert plain["instruction"] == CONFIGURED
    found = server.post("/search", json={"query": QUERY, "instruction": ASKED}).json()
    assert found["instruction"] == ASKED and found["truncation"]["max_length"] == MAX_LENGTH
    unranked = server.post("/search", json={"query": QUERY, "instruction": ASKED, "rerank": False})
    assert unranked.status_code == 422 and "does not rerank" in unranked.json()["error"]["message"]


# -- the server config ----------------------------------------------------------------------
def test_the_config_takes_an_instruction_per_model(tmp_path: Path) -> None:
    path = tmp_path / "config.json"  # JSON is YAML: either file works
    path.write_text('{"inference": {"q": {"model": "m", "instruction": "Find shoes"}, "b": {"model": "m"}}}')
    entries, _ = read_config(path)
    assert [e.instruction for e in entries] == ["Find shoes", None]
    for raw, message in (({"instruction": 5}, "inference.q.instruction must be a string"),
                         ({"instruction": " "}, "inference.q.instruction must not be empty"),
                         ({"type": "bi-encoder", "instruction": "x"}, "bi-encoders take no instruction")):
        with pytest.raises(InvalidInput, match=message):
            model_entry("q", {"model": "m", **raw})


def test_a_configured_instruction_on_a_model_that_reads_none_stops_the_start(
        bert_dir: Path, model_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelError, match=r"model 'msmarco' .* failed to load: .* takes no instruction"):
        load_served_models([model_entry("msmarco", {"model": str(bert_dir), "instruction": ASKED})],
                           ServerSettings(cache_dir=str(model_cache)))
    handler = signal.getsignal(signal.SIGTERM)  # the server's start-up installs its own
    try:
        code = main(["serve", "--model", str(bert_dir), "--instruction", ASKED, "--port", "0",
                     "--cache-dir", str(model_cache)])
    finally:
        signal.signal(signal.SIGTERM, handler)
    err = capsys.readouterr().err
    assert code == 2 and "takes no instruction" in err and "Traceback" not in err
