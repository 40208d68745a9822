"""The index as a product store: stored fields, filters inside each first stage, upsert and delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Encoder
from crossrank.cli import main
from crossrank.errors import InvalidInput
from crossrank.retrieval import Index, Record, build_index, filtered, read_records
from crossrank.retrieval.filters import parse_filter_expressions

FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 3
STORE = ["color", "price", "tags", "details.color", "brand"]


def _product(i: int) -> dict[str, Any]:
    """200 products; the 10 with i % 20 == 0 match every test filter and rank last on BM25 for 'crocs'
    (one mention in a long text, where the others say it three times in four words)."""
    low = i % 20 == 0
    row: dict[str, Any] = {
        "asin": f"P{i:03d}",
        "title": f"crocs {FILLER} {i}" if low else f"crocs crocs crocs clog {i}",
        "color": "Navy" if low else ("red", "black")[i % 2],
        "price": 10 + i / 20 if low else 100 + i,
        "tags": ["kids", "sale"] if low else ["adult"],
        "brand": "Crocs",
    }
    if low:
        row["details"] = [{"color": "navy"}, {"size": 3}]
    return row


MATCHING = {f"P{i:03d}" for i in range(0, 200, 20)}
FILTERS: dict[str, dict[str, Any]] = {
    "term": {"color": "navy"},
    "terms": {"color": ["green", "NAVY"]},
    "range": {"price": {"gte": 10, "lt": 40}},
    "exists": {"details.color": {"exists": True}},
    "list item": {"tags": "kids"},
    "term object": {"color": {"term": "navy"}},
}


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory, minilm_encoder: Encoder, minilm_dir: Path) -> Index:
    root = tmp_path_factory.mktemp("store")
    corpus = root / "products.jsonl"
    corpus.write_text("\n".join(json.dumps(_product(i)) for i in range(200)) + "\n")
    records = read_records(corpus, id_field="asin", text_fields=["title"], store_fields=STORE)
    build_index(root / "p.idx", records, encoder=minilm_encoder, encoder_model=str(minilm_dir), store=STORE)
    return Index.open(root / "p.idx")


def _brute_force(index: Index, encoder: Encoder, query: str, allowed: set[str], k: int) -> list[str]:
    docs = index.docs.get_documents(list(range(len(index.docs))))
    vectors = encoder.embed([text for _, text, _ in docs])
    q = encoder.embed_query(query)
    scores = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    ranked = sorted((-float(s), doc_id) for (doc_id, _, _), s in zip(docs, scores) if doc_id in allowed)
    return [doc_id for _, doc_id in ranked[:k]]


def test_stored_fields_keep_their_shape_nested_lists_and_numbers(products: Index) -> None:
    hit = products.search("crocs", 200, retriever="bm25")
    by_id = {c.id: c for c in hit}
    assert by_id["P020"].fields == {"color": "Navy", "price": 11.0, "tags": ["kids", "sale"],
                                    "details.color": ["navy"], "brand": "Crocs"}
    assert by_id["P001"].fields == {"color": "black", "price": 101, "tags": ["adult"], "brand": "Crocs"}
    assert products.stored_fields == STORE


@pytest.mark.parametrize("kind", ["bm25", "dense", "hybrid"])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_fills_the_top_n_inside_the_first_stage(products: Index, kind: str, name: str) -> None:
    unfiltered = {c.id for c in products.search("crocs", 10, retriever=kind)}
    found = products.search("crocs", 10, retriever=kind, filter=FILTERS[name])
    assert {c.id for c in found} == MATCHING  # all 10 matching ones: a full top 10
    assert [c.rank for c in found] == list(range(1, 11))
    assert len(unfiltered & MATCHING) < 10  # filtering the unfiltered top 10 afterwards would come up short
    if kind == "bm25":
        assert not unfiltered & MATCHING


def test_bm25_scores_are_unchanged_by_a_filter(products: Index) -> None:
    everything = {c.id: c.score for c in products.search("crocs", 200, retriever="bm25")}
    for c in products.search("crocs", 10, retriever="bm25", filter={"price": {"lt": 40}}):
        assert c.score == pytest.approx(everything[c.id])


def test_exists_false_and_range_bounds(products: Index) -> None:
    found = products.search("crocs", 50, retriever="bm25", filter={"details.color": {"exists": False}})
    assert len(found) == 50 and not {c.id for c in found} & MATCHING
    ids = {c.id for c in products.search("crocs", 200, retriever="bm25", filter={"price": {"gt": 10, "lte": 11}})}
    assert ids == {"P020"}  # 10.0 is excluded (gt), 11.0 included (lte)
    assert products.search("crocs", 10, retriever="bm25", filter={"price": {"gt": 19, "lt": 19}}) == []
    # a number also matches the same digits stored as text
    assert {c.id for c in products.search("crocs", 200, retriever="bm25", filter={"price": 110})} == {"P010"}


@pytest.mark.parametrize("limit", [3, filtered.EXACT_LIMIT])
@pytest.mark.parametrize("spec", [{"color": "navy"}, {"price": {"gte": 100}}])
def test_dense_filtered_top_k_is_the_exact_top_k_of_the_allowed_documents(
        products: Index, minilm_encoder: Encoder, monkeypatch: pytest.MonkeyPatch, limit: int,
        spec: dict[str, Any]) -> None:
    monkeypatch.setattr(filtered, "EXACT_LIMIT", limit)  # 3: the HNSW search widening until k are allowed
    allowed = {c.id for c in products.search("crocs", 300, retriever="bm25", filter=spec)}
    found = [c.id for c in products.search("kids clog in navy", 10, retriever="dense", filter=spec)]
    assert found == _brute_force(products, minilm_encoder, "kids clog in navy", allowed, 10)


@pytest.mark.parametrize("spec, message", [
    ({"size": 3}, "stored fields: color, price, tags, details.color, brand"),
    ({"price": {"lt": "cheap"}}, "must be a number"),
    ({"color": {"near": "navy"}}, "is not a condition"),
    ({"color": []}, "empty list"),
    ({"color": None}, "expected a string, number"),
    (["color"], "must be an object"),
])
def test_a_bad_filter_is_invalid_input_naming_what_to_fix(products: Index, spec: Any, message: str) -> None:
    for kind in ("bm25", "dense", "hybrid"):
        with pytest.raises(InvalidInput, match=message):
            products.search("crocs", 5, retriever=kind, filter=spec)


def test_filter_grammar_of_the_command_line() -> None:
    assert parse_filter_expressions(["price<40", "price>=10", "color=navy", "brand=Crocs|Nike", "details.color?",
                                     "!gift?", "in_stock=true", "size=7.5"]) == {
        "price": {"lt": 40, "gte": 10}, "color": "navy", "brand": ["Crocs", "Nike"],
        "details.color": {"exists": True}, "gift": {"exists": False}, "in_stock": True, "size": 7.5}
    for bad in ("price", "price<cheap", "=3", "?"):
        with pytest.raises(InvalidInput, match="--filter"):
            parse_filter_expressions([bad])


# -- upsert and delete -------------------------------------------------------------------------
def _small(tmp_path: Path, encoder: Encoder, model: Path) -> Index:
    records = [Record(f"d{i}", f"shoe number {i} clog", {"price": i, "color": "red"}) for i in range(20)]
    build_index(tmp_path / "s.idx", records, encoder=encoder, encoder_model=str(model), store=["price", "color"])
    return Index.open(tmp_path / "s.idx")


def _everything(index: Index, query: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in ("bm25", "dense", "hybrid"):
        found = index.search(query, 50, retriever=kind)
        out[kind] = {c.id: (c.text, c.fields) for c in found}
    return out


def test_upsert_and_delete_are_seen_by_every_stage_and_by_a_new_reader(
        tmp_path: Path, minilm_encoder: Encoder, minilm_dir: Path) -> None:
    index = _small(tmp_path, minilm_encoder, minilm_dir)
    report = index.delete(["d3", "d4", "nope"])
    assert (report.deleted, report.missing, report.total, len(index)) == (2, 1, 18, 18)
    report = index.upsert([Record("d5", "zebra slipper", {"price": 999, "color": "navy"}),
                           Record("new", "brand new clog", {"price": 1}),
                           Record("d5", "zebra slipper last", {"price": 998, "color": "navy"})])
    assert (report.added, report.replaced, report.total) == (1, 1, 19)
    for reader in (index, Index.open(tmp_path / "s.idx")):
        for kind, hits in _everything(reader, "shoe clog zebra slipper").items():
            assert "d3" not in hits and "d4" not in hits, kind
            assert hits["d5"] == ("zebra slipper last", {"price": 998, "color": "navy"}), kind
            assert "new" in hits, kind
        for kind in ("bm25", "dense", "hybrid"):
            assert [c.id for c in reader.search("zebra", 5, retriever=kind, filter={"color": "navy"})] == ["d5"]
            assert reader.search("shoe", 5, retriever=kind, filter={"price": {"gt": 998.5}}) == []
    assert len(reader.vectors()) == len(reader) == 19
    index.upsert([Record("d3", "back again", {"price": 3})])  # a deleted id can come back
    assert [c.text for c in index.search("again", 5, retriever="bm25")] == ["back again"]


def test_a_failed_upsert_leaves_the_index_as_it_was(tmp_path: Path, minilm_encoder: Encoder, minilm_dir: Path) -> None:
    index = _small(tmp_path, minilm_encoder, minilm_dir)
    generation = index.generation

    def broken() -> Iterator[Record]:
        yield Record("d1", "replaced", {"price": 1})
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError):
        build_index(tmp_path / "s.idx", broken(), mode="upsert", batch_size=1)
    reopened = Index.open(tmp_path / "s.idx")
    assert reopened.generation.name == generation.name and len(reopened) == 20
    assert reopened.search("shoe number 1", 1, retriever="bm25")[0].text == "shoe number 1 clog"


def test_upsert_refuses_other_stored_fields_and_old_indexes(tmp_path: Path) -> None:
    build_index(tmp_path / "a.idx", [Record("x", "clog", {"price": 1})], store=["price"])
    with pytest.raises(InvalidInput, match="stores the fields"):
        build_index(tmp_path / "a.idx", [Record("y", "boot")], mode="upsert", store=["color"])
    build_index(tmp_path / "old.idx", [Record("x", "clog")])
    manifest = tmp_path / "old.idx" / (tmp_path / "old.idx" / "CURRENT").read_text().strip() / "manifest.json"
    body = json.loads(manifest.read_text())
    del body["updatable"]  # as written before documents could be replaced
    manifest.write_text(json.dumps(body))
    with pytest.raises(InvalidInput, match="rebuild it once"):
        Index.open(tmp_path / "old.idx").delete(["x"])


# -- command line ----------------------------------------------------------------------------
def test_cli_stores_filters_upserts_and_deletes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps(_product(i)) for i in range(200)) + "\n")
    idx = str(tmp_path / "c.idx")
    assert main(["index", str(corpus), idx, "--id", "asin", "--text", "title", "--store", "color,price",
                 "--store", "details.color", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored_fields"] == ["color", "price", "details.color"]
    assert main(["search", idx, "crocs", "--no-rerank", "--json", "--filter", "price<40", "--filter", "color=navy"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {h["id"] for h in body["hits"]} == MATCHING
    assert body["hits"][0]["fields"]["color"] == "Navy" and body["hits"][0]["fields"]["details.color"] == ["navy"]
    assert main(["search", idx, "crocs", "--no-rerank", "--top-k", "1", "--filter", "details.color?"]) == 0
    table = capsys.readouterr().out
    assert "fields" in table.splitlines()[0] and 'color=Navy price=' in table and 'details.color=["navy"]' in table
    assert main(["search", idx, "crocs", "--no-rerank", "--filter", "size=3"]) == 2
    assert "not a stored field of this index; stored fields: color, price, details.color" in capsys.readouterr().err
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({"asin": "P020", "title": "zebra crocs", "color": "navy", "price": 5}) + "\n")
    assert main(["index", str(changed), idx, "--upsert", "--id", "asin", "--text", "title", "--no-progress"]) == 0
    assert "replaced 1 document" in capsys.readouterr().out
    gone = tmp_path / "gone.txt"
    gone.write_text("P040\nP060\nnot-there\n")
    assert main(["index", str(gone), idx, "--delete"]) == 0
    assert "deleted 2 document(s)" in capsys.readouterr().out
    assert main(["search", idx, "crocs", "--no-rerank", "--json", "--filter", "color=navy"]) == 0
    hits = {h["id"]: h for h in json.loads(capsys.readouterr().out)["hits"]}
    assert set(hits) == MATCHING - {"P040", "P060"}
    assert hits["P020"]["text"] == "zebra crocs" and hits["P020"]["fields"] == {"color": "navy", "price": 5}


@pytest.mark.parametrize("key, value, message", [
    ("deleted", 5, "'deleted' must be a count of at most 'documents'"),
    ("deleted", -1, "'deleted' must be a count"),
    ("store", "price", "'store' must list the stored field names"),
])
def test_a_manifest_with_bad_store_or_deleted_counts_is_a_bad_index(tmp_path: Path, key: str, value: Any,
                                                                     message: str) -> None:
    from crossrank.retrieval import BadIndex

    build_index(tmp_path / "m.idx", [Record("x", "clog", {"price": 1})], store=["price"])
    manifest = tmp_path / "m.idx" / (tmp_path / "m.idx" / "CURRENT").read_text().strip() / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), key: value}))
    with pytest.raises(BadIndex, match=message):
        Index.open(tmp_path / "m.idx")


def test_delete_refuses_one_string_for_a_list_of_ids(tmp_path: Path) -> None:
    build_index(tmp_path / "d.idx", [Record("abc", "clog"), Record("a", "boot")], store=["price"])
    with pytest.raises(InvalidInput, match="a list of ids"):
        Index.open(tmp_path / "d.idx").delete("abc")  # would otherwise delete "a", "b" and "c"
    assert len(Index.open(tmp_path / "d.idx")) == 2
