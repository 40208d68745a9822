"""LangChain, LlamaIndex and Haystack integrations, against each framework's own package: the
Reranker's order and scores, metadata kept, in-process and against a live ``crossrank serve``,
and clear errors (a missing framework, a server that refuses, fails or does not answer)."""

from __future__ import annotations

import importlib
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Index, InvalidInput, MissingExtra, Pipeline, Reranker
from crossrank.integrations.client import RerankClient, ServerError
from crossrank.retrieval import Record, build_index
from crossrank.server.launch import ServerProcess

pytest.importorskip("httpx")
pytest.importorskip("fastapi")

KEY = "integration-key"
QUERY = "crocs clog for kids"
TITLES = [
    "Crocs Kids' Baya Clog, navy",
    "Leather hiking boots for men",
    "Kids sandals for the summer",
    "Garden clog, green rubber",
    "Wool socks for winter boots",
    "Classic clog with fuzz lining, kids sizes",
    "Running shoes, lightweight foam",
]
META = [{"asin": f"B0{i:03d}", "brand": ["crocs", "merrell", "teva"][i % 3], "price": 10.0 + i} for i in range(len(TITLES))]
FRAMEWORKS = {"langchain": "langchain_core", "llamaindex": "llama_index", "haystack": "haystack"}


@pytest.fixture(scope="module")
def server(bert_dir: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("integrations-serve") / "server.log"
    args = ["--model", str(bert_dir), "--name", "ce", "--cache-dir", str(model_cache), "--api-key", KEY]
    with ServerProcess(args, log_path=log) as process:
        yield process


@pytest.fixture(params=["in-process", "server"])
def source(request: pytest.FixtureRequest, bert_reranker: Reranker) -> dict[str, Any]:
    """Where the integration gets its scores: keyword arguments for its constructor."""
    if request.param == "in-process":
        return {"reranker": bert_reranker}
    server: ServerProcess = request.getfixturevalue("server")
    return {"url": server.url, "model": "ce", "api_key": KEY}


def expected(reranker: Reranker, texts: list[str], top: int | None) -> tuple[list[int], np.ndarray]:
    scores = reranker.score(QUERY, texts)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:top]], scores


# -- the package itself ----------------------------------------------------------------------------
def test_importing_crossrank_imports_no_framework() -> None:
    code = ("import sys, crossrank, crossrank.integrations, crossrank.integrations.client; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(FRAMEWORKS.values())!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("extra", "framework"), FRAMEWORKS.items())
def test_missing_framework_names_the_extra(extra: str, framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [framework, *(m for m in sys.modules if m.startswith(framework + "."))]:
        monkeypatch.setitem(sys.modules, name, None)  # what an import finds when the package is absent
    monkeypatch.delitem(sys.modules, f"crossrank.integrations.{extra}", raising=False)
    with pytest.raises(MissingExtra, match=rf"pip install 'crossrank\[{extra}\]'"):
        importlib.import_module(f"crossrank.integrations.{extra}")


def test_exactly_one_source_and_a_valid_url(bert_reranker: Reranker) -> None:
    from crossrank.integrations.haystack import CrossrankRanker
    from crossrank.integrations.langchain import CrossrankRerank

    with pytest.raises(InvalidInput, match="either reranker="):
        CrossrankRerank()
    with pytest.raises(InvalidInput, match="not both"):
        CrossrankRanker(reranker=bert_reranker, url="http://127.0.0.1:1")
    with pytest.raises(InvalidInput, match="go with url="):
        CrossrankRanker(reranker=bert_reranker, model="ce")
    with pytest.raises(InvalidInput, match="must be a crossrank.Reranker"):
        CrossrankRanker(reranker="cross-encoder/ms-marco-MiniLM-L6-v2")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="server address"):
        RerankClient("127.0.0.1:8080")


# -- LangChain -------------------------------------------------------------------------------------
def _lc_docs() -> list[Any]:
    from langchain_core.documents import Document

    return [Document(page_content=t, metadata=dict(m), id=m["asin"]) for t, m in zip(TITLES, META)]


def test_langchain_compressor_gives_the_rerankers_order_and_keeps_metadata(
        source: dict[str, Any], bert_reranker: Reranker) -> None:
    from crossrank.integrations.langchain import CrossrankRerank

    docs = _lc_docs()
    order, scores = expected(bert_reranker, TITLES, 4)
    out = CrossrankRerank(**source, top_n=4).compress_documents(docs, QUERY)
    assert [d.page_content for d in out] == [TITLES[i] for i in order]
    assert [d.id for d in out] == [META[i]["asin"] for i in order]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], scores[order], rtol=1e-5)
    assert [{k: v for k, v in d.metadata.items() if k != "relevance_score"} for d in out] == [META[i] for i in order]
    assert all("relevance_score" not in d.metadata for d in docs), "the input documents were changed"
    assert len(CrossrankRerank(**source, top_n=None).compress_documents(docs, QUERY)) == len(docs)


def test_langchain_compressor_inside_contextual_compression_retriever(
        source: dict[str, Any], bert_reranker: Reranker) -> None:
    retrievers = pytest.importorskip("langchain_classic.retrievers")
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from crossrank.integrations.langchain import CrossrankRerank

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun
                                    ) -> list[Document]:
            return _lc_docs()

    retriever = retrievers.ContextualCompressionRetriever(
        base_compressor=CrossrankRerank(**source, top_n=3), base_retriever=Fixed())
    order, scores = expected(bert_reranker, TITLES, 3)
    out = retriever.invoke(QUERY)
    assert [d.metadata["asin"] for d in out] == [META[i]["asin"] for i in order]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], scores[order], rtol=1e-5)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("integrations-index") / "shoes.idx"
    build_index(path, [Record(str(m["asin"]), t, {"brand": m["brand"], "price": m["price"]}) for t, m in zip(TITLES, META)],
                store=("brand", "price"))
    return path


def test_langchain_retriever_searches_the_index_and_reranks(
        source: dict[str, Any], bert_reranker: Reranker, index_path: Path) -> None:
    from crossrank.integrations.langchain import CrossrankRetriever

    want = Pipeline(Index.open(index_path), bert_reranker).search(QUERY, candidates=5, top_k=3).hits
    assert len(want) == 3
    out = CrossrankRetriever(index=Index.open(index_path), **source, candidates=5, top_k=3).invoke(QUERY)
    assert [d.id for d in out] == [h.id for h in want]
    assert [d.page_content for d in out] == [h.text for h in want]
    expected = np.array([h.rerank_score for h in want], dtype=float)
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], expected, rtol=1e-5)
    assert [(d.metadata["rank"], d.metadata["first_stage_rank"]) for d in out] == \
        [(h.rank, h.first_stage_rank) for h in want]
    by_asin = {m["asin"]: m for m in META}  # the index's stored fields travel in the metadata
    assert [(d.metadata["brand"], d.metadata["price"]) for d in out] == \
        [(by_asin[d.id]["brand"], by_asin[d.id]["price"]) for d in out]


def test_langchain_retriever_refuses_what_is_not_an_index(bert_reranker: Reranker) -> None:
    from crossrank.integrations.langchain import CrossrankRetriever

    with pytest.raises(InvalidInput, match="crossrank.Index"):
        CrossrankRetriever(index="shoes.idx", reranker=bert_reranker)


# -- LlamaIndex ------------------------------------------------------------------------------------
def test_llamaindex_postprocessor_gives_the_rerankers_order_and_keeps_metadata(
        source: dict[str, Any], bert_reranker: Reranker) -> None:
    from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

    from crossrank.integrations.llamaindex import CrossrankRerank

    nodes = [NodeWithScore(node=TextNode(text=t, metadata=dict(m), id_=m["asin"]), score=0.5)
             for t, m in zip(TITLES, META)]
    # what LlamaIndex's own rerankers score: the text with the metadata it embeds
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert texts[0] != TITLES[0] and TITLES[0] in texts[0]
    order, scores = expected(bert_reranker, texts, 3)
    out = CrossrankRerank(**source, top_n=3).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [META[i]["asin"] for i in order]
    np.testing.assert_allclose(np.array([n.score for n in out], dtype=float), scores[order], rtol=1e-5)
    assert [n.node.metadata for n in out] == [META[i] for i in order]
    assert [n.score for n in nodes] == [0.5] * len(nodes), "the input nodes were changed"
    with pytest.raises(InvalidInput, match="needs the query"):
        CrossrankRerank(**source).postprocess_nodes(nodes)


# -- Haystack --------------------------------------------------------------------------------------
def test_haystack_ranker_gives_the_rerankers_order_in_a_pipeline(
        source: dict[str, Any], bert_reranker: Reranker) -> None:
    from haystack import Document
    from haystack import Pipeline as HaystackPipeline

    from crossrank.integrations.haystack import CrossrankRanker

    docs = [Document(content=t, meta=dict(m)) for t, m in zip(TITLES, META)]
    pipeline = HaystackPipeline()
    pipeline.add_component("ranker", CrossrankRanker(**source, top_k=5))
    order, scores = expected(bert_reranker, TITLES, None)
    for top_k, want in ((None, 5), (2, 2)):
        out = pipeline.run({"ranker": {"query": QUERY, "documents": docs, "top_k": top_k}})["ranker"]["documents"]
        assert [d.id for d in out] == [docs[i].id for i in order[:want]]
        assert [d.meta for d in out] == [META[i] for i in order[:want]]
        np.testing.assert_allclose([d.score for d in out], scores[order[:want]], rtol=1e-5)
    assert all(d.score is None for d in docs), "the input documents were changed"
    with pytest.raises(InvalidInput, match="no text content"):
        CrossrankRanker(**source).run(query=QUERY, documents=[Document(content=None, meta={"a": 1})])


def test_haystack_ranker_round_trips_a_server_url_and_refuses_to_dump_an_in_process_model(
        bert_reranker: Reranker) -> None:
    from haystack import Pipeline as HaystackPipeline

    from crossrank.integrations.haystack import CrossrankRanker

    pipeline = HaystackPipeline()
    pipeline.add_component("ranker", CrossrankRanker(url="http://127.0.0.1:9", model="ce", api_key=KEY, top_k=3))
    text = pipeline.dumps()
    assert KEY not in text
    loaded: Any = HaystackPipeline.loads(text, allowed_modules=["crossrank.integrations.haystack"]).get_component("ranker")
    assert (loaded.url, loaded.model, loaded.top_k) == ("http://127.0.0.1:9", "ce", 3)
    local = HaystackPipeline()
    local.add_component("ranker", CrossrankRanker(reranker=bert_reranker))
    with pytest.raises(InvalidInput, match="cannot be serialized"):
        local.dumps()


# -- server errors ---------------------------------------------------------------------------------
def test_server_errors_surface_through_every_integration(server: ServerProcess) -> None:
    from haystack import Document as HaystackDocument
    from llama_index.core.schema import NodeWithScore, TextNode

    from crossrank.integrations.haystack import CrossrankRanker
    from crossrank.integrations.langchain import CrossrankRerank
    from crossrank.integrations.llamaindex import CrossrankRerank as LlamaRerank

    wrong_model = {"url": server.url, "model": "no-such-model", "api_key": KEY}
    calls: list[Callable[[dict[str, Any]], object]] = [
        lambda kw: CrossrankRerank(**kw).compress_documents(_lc_docs(), QUERY),
        lambda kw: LlamaRerank(**kw).postprocess_nodes([NodeWithScore(node=TextNode(text="a"))], query_str=QUERY),
        lambda kw: CrossrankRanker(**kw).run(query=QUERY, documents=[HaystackDocument(content="a")]),
    ]
    for call in calls:
        with pytest.raises(ServerError, match="answered 404 .*no-such-model") as info:
            call(wrong_model)
        assert info.value.status == 404
        with pytest.raises(ServerError, match="answered 401") as info:
            call({**wrong_model, "model": "ce", "api_key": "wrong"})
        assert info.value.status == 401


def test_server_rejection_of_bad_input_names_the_problem(server: ServerProcess) -> None:
    client = RerankClient(server.url, model="ce", api_key=KEY)
    with pytest.raises(ServerError, match="answered 422") as info:
        client.score("", ["a"])
    assert info.value.status == 422


def test_unreachable_and_silent_servers_give_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerError, match="could not reach the crossrank server"):
        RerankClient(f"http://127.0.0.1:{port}").score(QUERY, ["a"])
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ServerError, match="did not answer within 0.5 s"):
            RerankClient(url, timeout=0.5).score(QUERY, ["a"])


# -- the documented snippets -----------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "INTEGRATIONS.md"
DOC_MODEL = 'Reranker("cross-encoder/ms-marco-MiniLM-L6-v2")'


def test_documented_snippets_run(bert_dir: Path, model_cache: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 4 and all(DOC_MODEL in block for block in blocks)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        # the tiny random model instead of the hub's: same code, no download
        exec(block.replace(DOC_MODEL, f"Reranker({str(bert_dir)!r}, cache_dir={str(model_cache)!r})"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 + 1 + 2 + 2 + 2, printed
    assert {line.split()[1] for line in printed[:2]} <= {"B01", "B02", "B03"}
