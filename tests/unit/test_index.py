"""Index building: corpus formats, skipped records, atomic publishing, crashes, adding, bad indexes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crossrank import Encoder
from crossrank.errors import InvalidInput
from crossrank.retrieval import BadIndex, CorpusChanged, Index, ReadStats, Record, build_index, read_records

WORDS = "clog sandal boot sneaker slipper loafer heel wedge pump mule oxford derby".split()


def _records(n: int, offset: int = 0) -> list[Record]:
    return [Record(f"d{i}", f"{WORDS[i % len(WORDS)]} number {i} {WORDS[(i * 7) % len(WORDS)]}")
            for i in range(offset, offset + n)]


def _bm25_ids(path: Path, query: str, k: int = 5) -> list[str]:
    return [c.id for c in Index.open(path).retriever("bm25").retrieve(query, k)]


# -- reading corpora ------------------------------------------------------------------------
def test_jsonl_with_chosen_fields_skips_and_counts(tmp_path: Path) -> None:
    corpus = tmp_path / "esci.jsonl"
    corpus.write_text(
        '{"asin": "B1", "title": "Crocs Kids Baya Clog", "brand": "Crocs"}\n'
        '{"asin": "B2"}\n'  # no title: skipped, counted
        '{"title": "no id"}\n'
        "[1, 2]\n"
        "\n"
        '{"asin": 3, "title": "", "brand": "Only brand"}\n'
        '{"asin": "B4", "title": "Boots"}\n'
    )
    stats = ReadStats()
    got = list(read_records(corpus, id_field="asin", text_fields=["title", "brand"], stats=stats))
    assert got == [Record("B1", "Crocs Kids Baya Clog\nCrocs"), Record("3", "Only brand"), Record("B4", "Boots")]
    assert stats.records == 3 and stats.lines == 7
    assert stats.skipped == {"no text in title/brand": 1, "no 'asin'": 1, "not a JSON object": 1}


def test_malformed_line_reported_by_number_skip_or_stop(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "one"}\n{"id": "b", "text": \n{"id": "c", "text": "three"}\n')
    stats = ReadStats()
    assert [r.id for r in read_records(corpus, stats=stats)] == ["a", "c"]
    assert stats.bad_lines == [2] and stats.skipped["malformed JSON"] == 1
    with pytest.raises(InvalidInput, match="line 2: malformed JSON"):
        list(read_records(corpus, on_error="stop"))


def test_beir_and_plain_text_formats(tmp_path: Path) -> None:
    beir = tmp_path / "corpus.jsonl"
    beir.write_text('{"_id": "x1", "title": "Title", "text": "Body text."}\n{"_id": "x2", "title": "", "text": "Only body"}\n')
    assert list(read_records(beir)) == [Record("x1", "Title\nBody text."), Record("x2", "Only body")]
    plain = tmp_path / "docs.txt"
    plain.write_text("first doc\n\nthird line doc\n")
    stats = ReadStats()
    assert list(read_records(plain, stats=stats)) == [Record("1", "first doc"), Record("3", "third line doc")]
    assert stats.skipped == {"empty line": 1}


def test_bad_unicode_in_a_corpus_becomes_the_replacement_character(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"  # a lone surrogate escaped in JSON (half an emoji) and bytes that are not UTF-8
    corpus.write_bytes(b'{"id": "a\\ud800", "text": "clog \\ud83d cut"}\n{"id": "b", "text": "boot \xff\xfe"}\n'
                       b'{"id": "c", "text": "crocs \\ud83d\\ude00"}\n')
    records = list(read_records(corpus))
    assert records == [Record("a\ufffd", "clog \ufffd cut"), Record("b", "boot \ufffd\ufffd"),
                       Record("c", "crocs \U0001f600")]
    path = tmp_path / "idx"
    assert build_index(path, records).added == 3  # the stored documents are UTF-8 again
    assert _bm25_ids(path, "clog") == ["a\ufffd"]


def test_reading_is_streaming(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "one"}\n' + "not json at all\n")
    records = read_records(corpus, on_error="stop")
    assert next(records) == Record("a", "one")  # the first record arrives before the bad line is read
    with pytest.raises(InvalidInput):
        next(records)


# -- building, adding, publishing -----------------------------------------------------------
def test_build_add_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    report = build_index(path, _records(30))
    assert report.added == 30 and report.total == 30 and not report.dense
    assert _bm25_ids(path, "number 7")[0] == "d7"
    more = build_index(path, [Record("d5", "duplicate id"), Record("new1", "brand new espadrille")], mode="add")
    assert (more.added, more.duplicates, more.total) == (1, 1, 31)
    index = Index.open(path)
    assert len(index) == 31
    assert [c.id for c in index.retriever("bm25").retrieve("espadrille", 3)] == ["new1"]
    assert index.retriever("bm25").retrieve("duplicate", 3) == []  # the duplicate was not stored
    assert _bm25_ids(path, "number 7")[0] == "d7"  # old documents still found
    # one live generation, no leftovers
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith(".lock")) == ["CURRENT", "gen-000002"]


def test_replace_publishes_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build_index(path, _records(10))

    def exploding() -> Iterator[Record]:
        yield from _records(5, offset=100)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        build_index(path, exploding())
    assert len(Index.open(path)) == 10
    assert not list(path.glob(".build-*"))  # the failed build was cleaned up
    with pytest.raises(InvalidInput, match="line 1"):
        (tmp_path / "bad.jsonl").write_text("{oops\n")
        build_index(path, read_records(tmp_path / "bad.jsonl", on_error="stop"))
    assert _bm25_ids(path, "number 3")[0] == "d3"


@pytest.mark.integration  # starts a process
def test_killed_indexer_leaves_previous_index_answering(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build_index(path, _records(20))
    corpus = tmp_path / "big.txt"
    with open(corpus, "w") as handle:
        for i in range(400_000):
            handle.write(f"replacement document {i} about espadrilles\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from crossrank.cli import main; raise SystemExit(main())",
         "index", str(corpus), str(path), "--no-progress", "--batch-size", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(path.glob(".build-*/docs.jsonl")) or (next(path.glob(".build-*/docs.jsonl")).stat().st_size < 200_000):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the build was mid-way; the previous index still answers, untouched
    index = Index.open(path)
    assert len(index) == 20
    assert index.retriever("bm25").retrieve("espadrilles", 5) == []
    assert _bm25_ids(path, "number 4")[0] == "d4"
    # the next build removes the crashed one and succeeds
    report = build_index(path, _records(3), mode="add")
    assert report.total == 20 and report.duplicates == 3
    assert not list(path.glob(".build-*"))


def test_open_index_keeps_answering_after_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build_index(path, _records(10))
    old = Index.open(path)
    old_bm25 = old.retriever("bm25")
    assert [c.id for c in old_bm25.retrieve("number 3", 1)] == ["d3"]
    build_index(path, [Record("n1", "entirely new espadrille")])  # replaces and deletes the old generation
    assert not old.generation.exists()
    assert [c.id for c in old_bm25.retrieve("number 4", 1)] == ["d4"]  # the running reader still answers
    assert [c.id for c in Index.open(path).retriever("bm25").retrieve("espadrille", 5)] == ["n1"]


def test_interrupt_is_cleaned_up(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build_index(path, _records(10))

    def interrupted() -> Iterator[Record]:
        yield from _records(3, offset=50)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(path, interrupted())
    assert len(Index.open(path)) == 10 and not list(path.glob(".build-*"))


# -- bad indexes ----------------------------------------------------------------------------
def test_missing_and_corrupt_index_errors(tmp_path: Path) -> None:
    with pytest.raises(BadIndex, match="no index at"):
        Index.open(tmp_path / "nothing")
    (tmp_path / "notidx").mkdir()
    with pytest.raises(BadIndex, match="not a crossrank index"):
        Index.open(tmp_path / "notidx")
    path = tmp_path / "idx"
    build_index(path, _records(5))
    generation = next(path.glob("gen-*"))
    (generation / "manifest.json").write_text("{truncated")
    with pytest.raises(BadIndex, match="corrupt"):
        Index.open(path)
    build_index(path, _records(5))
    generation = next(path.glob("gen-*"))
    with open(generation / "docs.jsonl", "ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(BadIndex, match="corrupt"):
        Index.open(path)
    (path / "CURRENT").write_text("gen-999999\n")
    with pytest.raises(BadIndex, match="missing generation"):
        Index.open(path)


def test_dense_requires_vectors_and_matching_dimension(tmp_path: Path, minilm_encoder: Encoder) -> None:
    bm25_only = tmp_path / "lex"
    build_index(bm25_only, _records(5))
    with pytest.raises(BadIndex, match="no vectors"):
        Index.open(bm25_only).retriever("dense", encoder=minilm_encoder)
    with pytest.raises(InvalidInput, match="no vectors"):
        build_index(bm25_only, _records(2, offset=10), encoder=minilm_encoder, mode="add")
    dense = tmp_path / "dense"
    build_index(dense, _records(8), encoder=minilm_encoder, encoder_model="minilm")
    manifest = json.loads((next(dense.glob("gen-*")) / "manifest.json").read_text())
    assert manifest["dense"] == {"model": "minilm", "dim": 384, "pooling": "mean", "normalize": True, "metric": "cos"}
    small = _SmallEncoder(minilm_encoder, 128)
    with pytest.raises(InvalidInput, match="128-dimensional"):
        Index.open(dense).retriever("hybrid", encoder=small)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="dimension 128 does not match"):
        build_index(dense, _records(2, offset=10), encoder=small, mode="add")  # type: ignore[arg-type]
    assert len(Index.open(dense)) == 8


class _SmallEncoder:
    """A real encoder whose vectors are cut to ``dim`` components (another model's dimension)."""

    def __init__(self, inner: Encoder, dim: int) -> None:
        self.inner, self.dim, self.name = inner, dim, "small"
        self.pooling, self.normalize = "mean", True

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed(texts)[:, : self.dim]

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed([text])[0]
        return vector


def test_add_to_a_dense_index_extends_the_vectors(tmp_path: Path, minilm_encoder: Encoder) -> None:
    path = tmp_path / "dense"
    texts = ["red clog for kids", "leather boot", "wool socks", "beach towel"]
    build_index(path, [Record(f"t{i}", t) for i, t in enumerate(texts)], encoder=minilm_encoder)
    added = ["waterproof rain jacket", "umbrella for storms"]
    report = build_index(path, [Record(f"n{i}", t) for i, t in enumerate(added)], mode="add")  # recorded encoder
    assert report.dense and report.total == 6
    index = Index.open(path)
    assert len(index.vectors()) == 6
    all_texts = texts + added
    ids = [f"t{i}" for i in range(4)] + ["n0", "n1"]
    vectors = minilm_encoder.embed(all_texts)
    for query in ("something for rainy weather", "footwear"):
        sims = vectors @ minilm_encoder.embed_query(query)
        got = index.retriever("dense", encoder=minilm_encoder).retrieve(query, 6)
        assert [c.id for c in got] == [ids[i] for i in np.argsort(-sims)]


# -- hostile corpora --------------------------------------------------------------------------
def test_a_line_nested_too_deeply_is_a_malformed_line(tmp_path: Path) -> None:
    corpus = tmp_path / "deep.jsonl"
    corpus.write_text('{"id": "a", "text": "clog"}\n' + '{"x": ' * 100_000 + "\n" + '{"id": "b", "text": "boot"}\n')
    stats = ReadStats()
    assert [r.id for r in read_records(corpus, stats=stats)] == ["a", "b"]
    assert stats.bad_lines == [2]
    with pytest.raises(InvalidInput, match="line 2: malformed JSON .nested too deeply"):
        list(read_records(corpus, on_error="stop"))


def test_a_corpus_rewritten_while_indexing_is_not_published(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"clog {i}"}) + "\n" for i in range(2000)))
    path = tmp_path / "idx"
    build_index(path, _records(5))

    def rewritten_midway() -> Iterator[Record]:
        for number, record in enumerate(read_records(corpus), start=1):
            if number == 500:  # another process rewrites the corpus in place
                corpus.write_text('{"id": "z", "text": "short"}\n')
            yield record

    with pytest.raises(CorpusChanged, match="changed while it was being read"):
        build_index(path, rewritten_midway(), batch_size=100)
    assert len(Index.open(path)) == 5 and not list(path.glob(".build-*"))


def test_a_corpus_appended_to_while_read_fails(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("one\ntwo\n")
    records = read_records(corpus)
    next(records)
    with open(corpus, "a") as handle:
        handle.write("three\n")
    with pytest.raises(CorpusChanged):
        list(records)


@pytest.mark.parametrize("opener", ["gzip", "bz2", "lzma", "zstandard"])
def test_compressed_corpora_are_read_as_such(tmp_path: Path, opener: str) -> None:
    import importlib

    module = importlib.import_module(opener)
    corpus = tmp_path / "products.jsonl.gz"  # the name's suffix does not matter, the first bytes do
    with module.open(corpus, "wt") as handle:
        handle.write('{"asin": "B1", "title": "Crocs clog"}\n{"asin": "B2", "title": "Leather boot"}\n')
    assert list(read_records(corpus, id_field="asin", text_fields=["title"])) == [
        Record("B1", "Crocs clog"), Record("B2", "Leather boot")]


def test_a_damaged_compressed_corpus_is_refused(tmp_path: Path) -> None:
    import gzip

    corpus = tmp_path / "c.jsonl.gz"
    lines = "".join(json.dumps({"id": str(i), "text": f"clog {i * 7919 % 10007}"}) + "\n" for i in range(2000))
    data = gzip.compress(lines.encode())
    corpus.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="gzip stream is damaged"):
        list(read_records(corpus))


def test_ignored_flags_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "notes.txt"
    corpus.write_text('{"asin": "B1", "title": "x"}\n')
    with caplog.at_level("WARNING"):
        assert [r.id for r in read_records(corpus, id_field="asin", text_fields=["title"])] == ["1"]
    assert "--id and --text ignored" in caplog.text and "looks like JSON lines" in caplog.text


def test_dotted_paths_and_lists_in_fields(tmp_path: Path) -> None:
    corpus = tmp_path / "nested.jsonl"
    corpus.write_text(
        '{"meta": {"asin": "B1"}, "title": "Clog", "details": {"color": "green"}, "tags": ["kids", "", "garden"]}\n'
        '{"meta": {"asin": "B2"}, "title": "Boot", "details": {"color": 7}, "tags": []}\n'
        '{"meta": {"asin": "B3"}, "title": "Heel", "details": "red", "reviews": [{"text": "comfy"}, {"text": "ok"}]}\n'
        '{"meta": {"asin": "B4"}, "details.color": "literal key wins"}\n'
    )
    stats = ReadStats()
    got = list(read_records(corpus, id_field="meta.asin",
                            text_fields=["title", "details.color", "tags", "reviews.text"], stats=stats))
    assert got == [Record("B1", "Clog\ngreen\nkids\ngarden"), Record("B2", "Boot"),
                   Record("B3", "Heel\ncomfy\nok"), Record("B4", "literal key wins")]
    assert stats.field_issues == {
        "details.color: a number, not text": 1, "details.color: 'details' is not an object": 1,
        "tags: null": 1, "tags: missing": 2, "reviews.text: missing": 3, "title: missing": 1,
    }


def test_cli_says_why_fields_gave_no_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossrank.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "details": {"color": 3}}\n')
    assert main(["index", str(corpus), str(tmp_path / "idx"), "--text", "details.color", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "details.color: a number, not text in 1" in err and not (tmp_path / "idx").exists()


def test_add_to_a_missing_index_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(BadIndex, match="no index at"):
        build_index(tmp_path / "missing.idx", _records(3), mode="add")
    assert not (tmp_path / "missing.idx").exists()


def test_a_byte_order_mark_and_crlf_lines_are_read(tmp_path: Path) -> None:
    corpus = tmp_path / "windows.jsonl"
    corpus.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "clog"}\r\n{"id": "b", "text": "boot"}\r\n')
    stats = ReadStats()
    assert [r.id for r in read_records(corpus, stats=stats)] == ["a", "b"] and not stats.skipped


def test_cli_warns_about_threads_without_an_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossrank.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "clog"}\n')
    assert main(["index", str(corpus), str(tmp_path / "idx"), "--threads", "2", "--no-progress"]) == 0
    assert "--threads sets the encoder's threads; without --encoder it is ignored" in capsys.readouterr().err
