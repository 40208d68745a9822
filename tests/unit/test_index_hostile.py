"""Tampered, partial and racing index directories: every reader gets a clean error naming the index.

A tiny index is built once, copied, and each copy damaged one way (truncated, emptied or garbage
files, missing parts, wrong types in the manifest, a deleted generation...). Opening and searching
each copy must raise :class:`BadIndex` (the CLI: ``error: ...`` naming the index), never
a raw exception. A reader that opens the index while a rebuild publishes sees the old or the new
generation, never an error.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Encoder
from crossrank.cli import main
from crossrank.retrieval import BadIndex, Index, Record, build_index, layout

WORDS = "clog sandal boot sneaker slipper loafer heel wedge pump mule oxford derby".split()
RECORDS = [Record(f"d{i}", f"{WORDS[i % len(WORDS)]} number {i} {WORDS[(i * 5) % len(WORDS)]}") for i in range(40)]


# Each damages an index directory in place; whatever a one-line damage returns is ignored.
Damage = Callable[[Path], object]


def _generation(root: Path) -> Path:
    return root / (root / "CURRENT").read_text().strip()


def _manifest(root: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = _generation(root) / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _truncate(relative: str, keep: float = 0.5) -> Damage:
    def damage(root: Path) -> None:
        path = _generation(root) / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def _garbage(relative: str, data: bytes = b"\x00\xffnot what you think\x89PNG" * 40) -> Damage:
    def damage(root: Path) -> None:
        (_generation(root) / relative).write_bytes(data)
    return damage


def _remove(relative: str) -> Damage:
    def damage(root: Path) -> None:
        target = _generation(root) / relative
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    return damage


def _directory_instead(relative: str) -> Damage:
    """Replace a file or directory of the generation by an empty directory."""
    def damage(root: Path) -> None:
        _remove(relative)(root)
        (_generation(root) / relative).mkdir()
    return damage


def _current_a_directory(root: Path) -> None:
    (root / "CURRENT").unlink()
    (root / "CURRENT").mkdir()


def _generation_a_file(root: Path) -> None:
    generation = _generation(root)
    shutil.rmtree(generation)
    generation.write_text("x")


def _lexical_files(root: Path, damage: Damage) -> None:
    for path in sorted((_generation(root) / "lexical").iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name != "meta.json":
            damage(path)


def _same_size_garbage_docs(root: Path) -> None:
    path = _generation(root) / "docs.jsonl"
    path.write_bytes(b"\xff" * path.stat().st_size)


def _docs_records_not_objects(root: Path) -> None:  # valid JSON of the right length, wrong shape
    generation = _generation(root)
    lines = [b'["x"]\n'] * len(RECORDS)
    (generation / "docs.jsonl").write_bytes(b"".join(lines))
    np.save(generation / "offsets.npy", np.cumsum([0] + [len(x) for x in lines]).astype(np.int64))


def _offsets_out_of_order(root: Path) -> None:
    path = _generation(root) / "offsets.npy"
    offsets = np.load(path)
    offsets[1:-1] = offsets[1:-1][::-1]
    np.save(path, offsets)


def _offsets(values: np.ndarray) -> Damage:
    def damage(root: Path) -> None:
        np.save(_generation(root) / "offsets.npy", values, allow_pickle=True)
    return damage


LEXICAL_VARIANTS: dict[str, Damage] = {
    "CURRENT empty": lambda r: (r / "CURRENT").write_text(""),
    "CURRENT garbage bytes": lambda r: (r / "CURRENT").write_bytes(b"\xff\xfe\x00gen"),
    "CURRENT points outside": lambda r: (r / "CURRENT").write_text("../../etc\n"),
    "CURRENT points at a file": lambda r: (r / "CURRENT").write_text("gen-000001/manifest.json\n"),
    "CURRENT is a directory": _current_a_directory,
    "CURRENT missing": lambda r: (r / "CURRENT").unlink(),
    "generation deleted": lambda r: shutil.rmtree(_generation(r)),
    "generation is a file": _generation_a_file,
    "manifest missing": _remove("manifest.json"),
    "manifest empty": _garbage("manifest.json", b""),
    "manifest truncated": _truncate("manifest.json"),
    "manifest garbage": _garbage("manifest.json"),
    "manifest a list": _garbage("manifest.json", b"[1, 2]"),
    "manifest a directory": _directory_instead("manifest.json"),
    "manifest documents a string": lambda r: _manifest(r, lambda m: m.update(documents="forty")),
    "manifest documents a list": lambda r: _manifest(r, lambda m: m.update(documents=[40])),
    "manifest documents negative": lambda r: _manifest(r, lambda m: m.update(documents=-1)),
    "manifest documents too many": lambda r: _manifest(r, lambda m: m.update(documents=41)),
    "manifest documents missing": lambda r: _manifest(r, lambda m: m.pop("documents")),
    "manifest version wrong": lambda r: _manifest(r, lambda m: m.update(version=99)),
    "manifest format wrong": lambda r: _manifest(r, lambda m: m.update(format="other")),
    "manifest dense a string": lambda r: _manifest(r, lambda m: m.update(dense="yes")),
    "manifest dense without dim": lambda r: _manifest(r, lambda m: m.update(dense={"model": "m"})),
    "manifest dense dim a string": lambda r: _manifest(
        r, lambda m: m.update(dense={"model": "m", "dim": "big", "metric": "cos"})),
    "docs missing": _remove("docs.jsonl"),
    "docs empty": _garbage("docs.jsonl", b""),
    "docs truncated": _truncate("docs.jsonl"),
    "docs garbage of the same size": _same_size_garbage_docs,
    "docs records not objects": _docs_records_not_objects,
    "docs a directory": _directory_instead("docs.jsonl"),
    "offsets missing": _remove("offsets.npy"),
    "offsets empty": _garbage("offsets.npy", b""),
    "offsets truncated": _truncate("offsets.npy"),
    "offsets garbage": _garbage("offsets.npy"),
    "offsets 2-d": _offsets(np.zeros((2, 2), dtype=np.int64)),
    "offsets floats": _offsets(np.linspace(0, 1, len(RECORDS) + 1)),
    "offsets strings": _offsets(np.array(["a"] * (len(RECORDS) + 1))),
    "offsets pickled objects": _offsets(np.array([{}] * (len(RECORDS) + 1), dtype=object)),
    "offsets out of order": _offsets_out_of_order,
    "lexical missing": _remove("lexical"),
    "lexical empty": _directory_instead("lexical"),
    "lexical meta garbage": _garbage("lexical/meta.json"),
    "lexical meta truncated": _truncate("lexical/meta.json"),
    "lexical meta empty": _garbage("lexical/meta.json", b""),
    "lexical segments truncated": lambda r: _lexical_files(r, lambda p: p.write_bytes(p.read_bytes()[:7])),
    "lexical segments emptied": lambda r: _lexical_files(r, lambda p: p.write_bytes(b"")),
    "lexical segments garbage": lambda r: _lexical_files(r, lambda p: p.write_bytes(b"\x13" * p.stat().st_size)),
    "lexical segments missing": lambda r: _lexical_files(r, lambda p: p.unlink()),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "idx"
    build_index(path, RECORDS)
    return path


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def _search_all(root: Path, kind: str = "bm25", encoder: Encoder | None = None) -> None:
    index = Index.open(root)
    retriever = index.retriever(kind, encoder=encoder)
    for word in WORDS:
        retriever.retrieve(f"{word} number", len(RECORDS))


@pytest.mark.parametrize("variant", sorted(LEXICAL_VARIANTS))
def test_a_tampered_index_gives_a_clean_error_naming_it(pristine: Path, tmp_path: Path, variant: str) -> None:
    root = _copy(pristine, tmp_path / "tampered.idx")
    LEXICAL_VARIANTS[variant](root)
    with pytest.raises(BadIndex) as caught:
        _search_all(root)
    assert str(root) in str(caught.value)


@pytest.mark.parametrize("variant", ["manifest garbage", "docs truncated", "lexical segments garbage",
                                     "CURRENT points outside", "offsets pickled objects", "generation deleted"])
def test_the_cli_names_the_tampered_index(pristine: Path, tmp_path: Path, variant: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(pristine, tmp_path / "tampered.idx")
    LEXICAL_VARIANTS[variant](root)
    code = main(["search", str(root), "clog number", "--no-rerank"])
    err = capsys.readouterr().err
    # exit 1, not 2: damaged files are a storage failure (crossrank.errors.ANSWERS), not an input to fix
    assert code == 1 and err.startswith("error: ") and str(root) in err and "Traceback" not in err


def test_the_pristine_copy_searches(pristine: Path, tmp_path: Path) -> None:
    _search_all(_copy(pristine, tmp_path / "ok.idx"))  # the damage, not the copying, makes the errors


# -- vectors ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine_dense(tmp_path_factory: pytest.TempPathFactory, minilm_encoder: Encoder) -> Path:
    path = tmp_path_factory.mktemp("pristine-dense") / "idx"
    build_index(path, RECORDS[:12], encoder=minilm_encoder, encoder_model="minilm")
    return path


DENSE_VARIANTS: dict[str, Damage] = {
    "vectors missing": _remove("vectors.usearch"),
    "vectors empty": _garbage("vectors.usearch", b""),
    "vectors truncated": _truncate("vectors.usearch"),
    "vectors cut to the header": _truncate("vectors.usearch", keep=0.01),
    "vectors garbage": _garbage("vectors.usearch"),
    "vectors a directory": _directory_instead("vectors.usearch"),
    "manifest dim wrong": lambda r: _manifest(r, lambda m: m["dense"].update(dim=7)),
    "manifest metric unknown": lambda r: _manifest(r, lambda m: m["dense"].update(metric="manhattan")),
}


@pytest.mark.parametrize("variant", sorted(DENSE_VARIANTS))
def test_tampered_vectors_give_a_clean_error(pristine_dense: Path, tmp_path: Path, variant: str,
                                             minilm_encoder: Encoder) -> None:
    root = _copy(pristine_dense, tmp_path / "tampered.idx")
    DENSE_VARIANTS[variant](root)
    with pytest.raises(BadIndex) as caught:
        Index.open(root).retriever("dense", encoder=minilm_encoder).retrieve("clog", 5)
    assert str(root) in str(caught.value)


# -- a reader racing a rebuild ---------------------------------------------------------------
def test_a_reader_opening_during_a_publish_sees_the_new_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "idx"
    build_index(root, RECORDS)
    real = layout.read_manifest
    rebuilt: list[str] = []

    def rebuild_first(generation: Path) -> dict[str, Any]:
        if not rebuilt:  # the reader resolved CURRENT; a rebuild publishes and deletes that generation now
            rebuilt.append(build_index(root, [Record("new", "espadrille")]).generation)
        return real(generation)

    monkeypatch.setattr(layout, "read_manifest", rebuild_first)
    index = Index.open(root)
    assert index.generation.name == rebuilt[0] and len(index) == 1
    assert [c.id for c in index.retriever("bm25").retrieve("espadrille", 3)] == ["new"]
