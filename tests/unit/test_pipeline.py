"""Retrieve -> rerank: the Pipeline, the paragraph mode, and the index/search commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossrank import Encoder, Reranker
from crossrank.cli import main
from crossrank.errors import InvalidInput
from crossrank.retrieval import Index, Pipeline, Record, build_index, search_paragraphs, split_paragraphs

DOCS = [
    "Crocs Kids' Baya Clog, lightweight and comfortable",
    "Leather hiking boots for men, waterproof",
    "Kids sandals for the summer beach",
    "Garden clog, green, waterproof rubber",
    "Wool socks, warm, for winter boots",
    "Running shoes with a mesh upper",
]


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory, minilm_encoder: Encoder, minilm_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "idx"
    build_index(path, [Record(f"p{i}", t) for i, t in enumerate(DOCS)], encoder=minilm_encoder,
                encoder_model=str(minilm_dir))
    return path


def test_pipeline_reranks_candidates_with_the_cross_encoder(index_path: Path, bert_reranker: Reranker) -> None:
    retriever = Index.open(index_path).retriever("hybrid")
    query = "clog for kids"
    candidates = retriever.retrieve(query, 5)
    result = Pipeline(retriever, bert_reranker).search(query, candidates=5, top_k=3)
    expected = bert_reranker.score(query, [c.text for c in candidates])
    order = np.argsort(-expected, kind="stable")[:3]
    assert [h.id for h in result.hits] == [candidates[i].id for i in order]
    for hit, i in zip(result.hits, order):
        assert hit.rerank_score == pytest.approx(float(expected[i]))
        assert (hit.first_stage_rank, hit.first_stage_score, hit.text) == (
            candidates[i].rank, candidates[i].score, candidates[i].text)
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert result.candidates == 5 and result.retriever == "hybrid" and result.reranker == bert_reranker.name
    assert set(result.timings_ms) == {"retrieve", "rerank", "total"}
    assert result.timings_ms["total"] >= result.timings_ms["retrieve"]
    body = json.loads(json.dumps(result.to_dict()))
    assert body["hits"][0]["id"] == result.hits[0].id and "timings_ms" in body


def test_pipeline_without_reranker_keeps_first_stage_order(index_path: Path) -> None:
    retriever = Index.open(index_path).retriever("bm25")
    result = Pipeline(retriever).search("waterproof clog", candidates=10, top_k=2)
    first = retriever.retrieve("waterproof clog", 10)
    assert [h.id for h in result.hits] == [c.id for c in first[:2]]
    assert all(h.rerank_score is None for h in result.hits)
    assert "rerank" not in result.timings_ms
    assert Pipeline(Index.open(index_path)).retriever.name == "hybrid"  # an index alone: hybrid when it has vectors
    with pytest.raises(InvalidInput):
        Pipeline(retriever).search("x", candidates=0)
    with pytest.raises(InvalidInput):
        Pipeline(retriever).search(None, top_k=3)  # type: ignore[arg-type]


def test_paragraph_mode_scores_every_paragraph(bert_reranker: Reranker) -> None:
    text = "First paragraph\nabout clogs.\n\n  Second one, boots.  \n\n\nThird: sandals.\n"
    assert split_paragraphs(text) == ["First paragraph\nabout clogs.", "Second one, boots.", "Third: sandals."]
    assert split_paragraphs("line one\nline two\n") == ["line one", "line two"]
    result = search_paragraphs(bert_reranker, text, "clogs", top_k=10)
    scores = bert_reranker.score("clogs", split_paragraphs(text))
    assert [h.id for h in result.hits] == [str(i + 1) for i in np.argsort(-scores, kind="stable")]
    assert result.candidates == 3 and result.retriever == "paragraphs"


def test_cli_index_then_search(tmp_path: Path, minilm_dir: Path, bert_dir: Path, model_cache: Path,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(model_cache.parent / "hf"))
    corpus = tmp_path / "products.jsonl"
    lines = [json.dumps({"asin": f"A{i}", "title": t}) for i, t in enumerate(DOCS)]
    corpus.write_text("\n".join(lines[:3] + ["{broken", json.dumps({"asin": "A9"})] + lines[3:]) + "\n")
    index = tmp_path / "products.idx"
    assert main(["index", str(corpus), str(index), "--id", "asin", "--text", "title", "--encoder",
                 str(minilm_dir), "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 6 and report["malformed_lines"] == [4]
    assert report["skipped"] == {"malformed JSON": 1, "no text in title": 1} and report["dense"]
    assert main(["index", str(corpus), str(index), "--id", "asin", "--text", "title", "--on-error", "stop",
                 "--no-progress"]) == 2
    assert "line 4: malformed JSON" in capsys.readouterr().err
    assert len(Index.open(index)) == 6  # the stopped build replaced nothing
    assert main(["index", str(corpus), str(index), "--id", "asin", "--text", "name", "--no-progress"]) == 2
    err = capsys.readouterr().err  # a wrong field name reads no record: an error, not an empty index
    assert "no record to index (1 malformed JSON, 7 no text in name; fields: name: missing in 7)" in err
    assert "not touched" in err
    assert len(Index.open(index)) == 6
    (tmp_path / "a-file").write_text("")
    for target, message in ((tmp_path / "a-file", "exists and is not a directory"),
                            (tmp_path / "a-file" / "below", "cannot create the index directory")):
        assert main(["index", str(corpus), str(target), "--id", "asin", "--text", "title", "--no-progress"]) == 2
        assert message in capsys.readouterr().err

    assert main(["search", str(index), "kids clog", "--retriever", "hybrid", "--candidates", "4", "--top-k", "2",
                 "--rerank", str(bert_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["retriever"] == "hybrid" and out["candidates"] == 4 and len(out["hits"]) == 2
    assert all(isinstance(h["rerank_score"], float) for h in out["hits"])

    assert main(["search", str(index), "kids clog", "--no-rerank"]) == 0
    table = capsys.readouterr().out
    assert "bm25 rank" in table and "A0" in table

    doc = tmp_path / "doc.txt"
    doc.write_text("Clogs are shoes.\n\nBoots are taller.\n")
    assert main(["search", "--file", str(doc), "what are clogs?", "--model", str(bert_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["candidates"] == 2

    assert main(["search", str(tmp_path / "missing.idx"), "q", "--no-rerank"]) == 2
    assert "no index at" in capsys.readouterr().err
