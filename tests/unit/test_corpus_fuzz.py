"""A seeded fuzzer over ``crossrank index``: hostile corpus files index or fail cleanly, never crash.

Each case builds one corpus file from hostile pieces (deep nesting, invalid UTF-8, NUL bytes,
huge lines, ids and texts of every JSON type, duplicate ids, BOMs, CRLF, lone CRs, surrogate
escapes, truncated JSON, compressed and damaged streams...) with ``random.Random(seed)``, so a
failure names a case that replays exactly. The CLI runs in-process (BM25 only, small writer
heap): it must return 0 with a searchable index holding what it reported, or 1/2 with an
``error:`` line; any other exception escaping ``main`` fails the test with its traceback.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import string
from pathlib import Path

import pytest

from crossrank.cli import main
from crossrank.retrieval import Index

CASES = 200
WORDS = "clog boot sandal heel kids garden leather green waterproof summer".split()


def _word(rng: random.Random) -> str:
    return rng.choice(WORDS)


def _scalar(rng: random.Random) -> object:
    return rng.choice([
        "", " ", "\t\n", "plain id", 0, -7, 3.5, 1e308, True, False, None, [], {}, ["a", "b"], {"x": 1},
        "x" * 5000, "\u202eRTL\u202c", "e\u0301", "\U0001f600", "a\u0000b", "new\nline", "\\", "\ud800",
        "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 30))),
    ])


def _text(rng: random.Random) -> object:
    kind = rng.randrange(9)
    if kind < 3:
        return " ".join(_word(rng) for _ in range(rng.randint(1, 12)))
    if kind == 3:
        return [" ".join(_word(rng) for _ in range(3)), "", None, 5]
    if kind == 4:
        return {"nested": _word(rng)}
    if kind == 5:
        return "a" * rng.choice([41, 1000, 100_000])  # one token longer than the lexical limit
    if kind == 6:
        return _word(rng) + "\u0000" + _word(rng) + "\ufffe\uffff\x7f\x1b"
    return _scalar(rng)


def _record(rng: random.Random, ids: list[object]) -> bytes:
    fields: dict[str, object] = {}
    if rng.random() < 0.9:
        fields["id"] = rng.choice(ids) if ids and rng.random() < 0.2 else (
            f"d{rng.randrange(10**6)}" if rng.random() < 0.7 else _scalar(rng))
        ids.append(fields["id"])
    if rng.random() < 0.9:
        fields["text"] = _text(rng)
    for extra in ("title", "_id", "details"):
        if rng.random() < 0.2:
            fields[extra] = {"color": _text(rng)} if extra == "details" else _text(rng)
    return json.dumps(fields, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def _hostile_line(rng: random.Random) -> bytes:
    return rng.choice([
        b"[" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"id": "x", "text": "cut',
        b"\xff\xfe\xfd garbage \xc3\x28",
        b'{"id": "bad\xffutf8", "text": "clog \xe2\x82"}',
        b"\x00\x00\x00",
        b'{"id": "nul", "text": "boot\x00heel"}',
        b'{"id": "sur", "text": "\\ud83d half an emoji \\udc00"}',
        b"[1, 2, 3]", b'"just a string"', b"42", b"null", b"NaN", b"{}",
        b'{"id": 1' + b"0" * 5000 + b', "text": "huge int id"}',
        b'{"id": "dup", "text": "first"}', b'{"id": "dup", "text": "second"}',
        b'{"id": "big", "text": "' + b"clog " * rng.choice([10, 200_000]) + b'"}',
        b'{"id": "ctl", "text": "\\u0001\\u0002\\u001b[31m red"}',
        b"   ", b"\t",
        b'{"id": "esc", "text": "a:b \\"c\\" (AND) -x * ? ^2 ~ [1 TO 5]"}',
    ])


def _corpus_bytes(rng: random.Random) -> bytes:
    ids: list[object] = []
    lines = [(_hostile_line(rng) if rng.random() < 0.3 else _record(rng, ids)) for _ in range(rng.randint(0, 40))]
    newline = rng.choice([b"\n", b"\r\n", b"\r", b"\n\n"])
    body = newline.join(lines) + (newline if rng.random() < 0.7 else b"")
    if rng.random() < 0.15:
        body = b"\xef\xbb\xbf" + body  # a byte order mark
    if rng.random() < 0.05:
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000)))  # binary garbage
    return body


def _wrap(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    kind = rng.randrange(10)
    if kind == 0:
        return gzip.compress(body), ".jsonl.gz"
    if kind == 1:
        data = gzip.compress(body)
        return data[: max(2, len(data) // 2)], ".jsonl.gz"  # a cut download
    if kind == 2:
        return bz2.compress(body), rng.choice([".jsonl.bz2", ".txt"])
    if kind == 3:
        return lzma.compress(body), ".jsonl.xz"
    if kind == 4:
        return b"\x28\xb5\x2f\xfd" + body[:100], ".jsonl.zst"  # zstd magic, bogus frame
    return body, rng.choice([".jsonl", ".jsonl", ".ndjson", ".json", ".txt", "/corpus.jsonl"])


def _arguments(rng: random.Random) -> list[str]:
    args = ["--no-progress", "--heap-mb", "16", "--batch-size", str(rng.choice([1, 3, 256]))]
    if rng.random() < 0.3:
        args += ["--format", rng.choice(["auto", "jsonl", "beir", "text"])]
    if rng.random() < 0.3:
        args += ["--id", rng.choice(["id", "_id", "details.color", "missing", "text"])]
    if rng.random() < 0.3:
        fields = ["text", "title,text", "details.color", "text,details", "nope", "tags", "title,details.color"]
        args += ["--text", rng.choice(fields)]
    if rng.random() < 0.3:
        args += ["--on-error", rng.choice(["skip", "stop"])]
    return args


@pytest.mark.parametrize("seed", range(CASES))
def test_hostile_corpus_indexes_or_fails_cleanly(seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(seed)
    data, suffix = _wrap(rng, _corpus_bytes(rng))
    corpus = tmp_path / f"input{suffix}"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_bytes(data)
    index = tmp_path / "idx"
    add = rng.random() < 0.2
    if add:  # extend an existing index with the hostile corpus
        (tmp_path / "seed.jsonl").write_text('{"id": "seed", "text": "clog seed"}\n')
        assert main(["index", str(tmp_path / "seed.jsonl"), str(index), "--no-progress", "--heap-mb", "16"]) == 0
    capsys.readouterr()
    code = main(["index", str(corpus), str(index), "--json", *(["--add"] if add else []), *_arguments(rng)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code != 0:
        assert code in (1, 2) and err.splitlines()[-1].startswith("error: "), err[-2000:]
        if not add:
            assert not (index / "CURRENT").exists()  # nothing half-built was published
        return
    report = json.loads(out.splitlines()[-1])
    opened = Index.open(index)
    assert len(opened) == report["documents"] >= 1
    retriever = opened.retriever("bm25")
    for query in (*WORDS[:3], "a:b (AND", "\u0000", "seed"):
        for hit in retriever.retrieve(query, 5):
            assert isinstance(hit.id, str) and isinstance(hit.text, str)
