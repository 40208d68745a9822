"""ONNX graphs with external data (over 2 GiB in real life; forced here on a tiny model).

Exports write ``model.onnx`` + ``model.onnx_data``; repositories that ship ``model.onnx_data`` or
``model.onnx.data`` load from a directory and through the hub; the first-token cut links the
original's data file instead of copying it. Scores equal the single-file graph's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from crossrank import Reranker
from crossrank.models.export import cached_export
from crossrank.models.external_data import all_tensors, consolidate, data_path
from crossrank.models.resolve import resolve_model
from fakehub import FakeHub

DOCS = ["Crocs Kids' Baya Clog", "Crocs Specialist Vent Work", "lemon cake", ""]
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="module")
def single_file(bert_dir: Path, model_cache: Path) -> Path:
    return cached_export(resolve_model(bert_dir), task="sequence-classification", cache_dir=model_cache)


@pytest.fixture(scope="module")
def expected(bert_dir: Path, model_cache: Path) -> np.ndarray:
    return Reranker(bert_dir, cache_dir=model_cache).score("crocs", DOCS)


def _repo(source: Path, target: Path) -> Path:
    (target / "onnx").mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target


def _ship_external(bert_dir: Path, single_file: Path, target: Path, location: str | None) -> Path:
    """A repository whose onnx/model.onnx keeps every tensor in ``onnx/<location>``.

    ``None``: one file per tensor, ``Constant`` node values included, as torch's exporter writes a
    model over 2 GiB.
    """
    repo = _repo(bert_dir, target)
    model = onnx.load(str(single_file))
    if location is None:  # torch also moves a large Constant's value (the position ids) to a file of its own
        node = next(n for n in model.graph.node if n.op_type == "Constant" and len(n.attribute[0].t.raw_data) > 1024)
        value = node.attribute[0].t
        (repo / "onnx" / f"{node.name}_attr__value").write_bytes(value.raw_data)
        value.ClearField("raw_data")
        entry = value.external_data.add()
        entry.key, entry.value = "location", f"{node.name}_attr__value"
        value.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(repo / "onnx" / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=location is not None, location=location, size_threshold=0)
    if location is not None:
        assert (repo / "onnx" / location).stat().st_size > (repo / "onnx" / "model.onnx").stat().st_size
    return repo


def test_an_export_over_the_threshold_keeps_its_weights_in_one_data_file(
    bert_dir: Path, single_file: Path, expected: np.ndarray, tmp_path: Path
) -> None:
    graph = cached_export(resolve_model(bert_dir), task="sequence-classification", cache_dir=tmp_path / "cache",
                          external_data_bytes=0)
    data = data_path(graph)
    assert sorted(p.name for p in graph.parent.iterdir()) == ["model.onnx", "model.onnx_data"]
    assert graph.stat().st_size < single_file.stat().st_size / 10 < data.stat().st_size
    repo = _repo(bert_dir, tmp_path / "repo")
    shutil.copy(graph, repo / "onnx" / "model.onnx")
    shutil.copy(data, repo / "onnx" / "model.onnx_data")
    scores = Reranker(repo, cache_dir=tmp_path / "cache").score("crocs", DOCS)
    assert np.allclose(scores, expected, atol=1e-6)


def test_consolidate_gathers_per_tensor_files_and_removes_them(single_file: Path, tmp_path: Path) -> None:
    """torch writes one file per tensor for a model over 2 GiB: they become one aligned data file."""
    graph = tmp_path / "model.onnx"
    onnx.save(onnx.load(str(single_file)), str(graph), save_as_external_data=True, all_tensors_to_one_file=False,
              size_threshold=0, convert_attribute=True)  # node attributes too, as torch writes large Constants
    scattered = [p.name for p in tmp_path.iterdir() if p.name != "model.onnx"]
    assert len(scattered) > 10
    assert consolidate(graph)  # not over the threshold, but already external
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx_data"]
    left = onnx.load(str(graph), load_external_data=False)
    offsets = [int(e.value) for t in all_tensors(left.graph) for e in t.external_data if e.key == "offset"]
    assert offsets and all(o % 4096 == 0 for o in offsets)
    inline = [t for t in all_tensors(left.graph) if t.data_location != onnx.TensorProto.EXTERNAL]
    assert len(inline) > len([t for t in left.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL])
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])  # and the graph still loads
    assert session.get_outputs()[0].name == "logits"
    assert not consolidate(single_file)  # a small single-file graph stays as it is


@pytest.mark.parametrize("location", ["model.onnx_data", "model.onnx.data", None])
def test_a_directory_shipping_external_data_loads_and_the_cut_links_it(
    bert_dir: Path, single_file: Path, expected: np.ndarray, tmp_path: Path, location: str
) -> None:
    repo = _ship_external(bert_dir, single_file, tmp_path / "repo", location)
    reranker = Reranker(repo, cache_dir=tmp_path / "cache")
    assert np.allclose(reranker.score("crocs", DOCS), expected, atol=1e-6)
    cut = Path(reranker.runtime.path)
    assert cut != repo / "onnx" / "model.onnx"  # the first-token cut is in use
    data = [p.name for p in cut.parent.iterdir() if p.name != "model.onnx"]
    assert data  # the word embeddings at least stay outside the cut graph
    for name in data:  # the cut reuses the shipped data files (same inode, or a link), never a second copy
        linked, shipped = cut.parent / name, repo / "onnx" / name
        assert linked.resolve() == shipped.resolve() or os.stat(linked).st_ino == os.stat(shipped).st_ino


def _sharded(bert_dir: Path, target: Path) -> Path:
    """bert_dir's weights saved in shards with an index, as large models (Qwen3-Reranker-4B) are."""
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(bert_dir))
    model.save_pretrained(str(target), max_shard_size="20MB")
    for name in TOKENIZER_FILES[1:]:
        if (bert_dir / name).is_file():
            shutil.copy(bert_dir / name, target / name)
    assert (target / "model.safetensors.index.json").is_file() and not (target / "model.safetensors").exists()
    return target


@pytest.fixture(scope="module")
def hub(bert_dir: Path, single_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    root = tmp_path_factory.mktemp("external-hub")
    repos = {
        "org/onnx-data": {"main": _ship_external(bert_dir, single_file, root / "a", "model.onnx_data")},
        "org/onnx-dot-data": {"main": _ship_external(bert_dir, single_file, root / "b", "model.onnx.data")},
        "org/sharded": {"main": _sharded(bert_dir, root / "sharded")},
    }
    with FakeHub(repos) as server:
        yield server


def _score_in_a_fresh_process(hub: FakeHub, tmp_path: Path, repo: str) -> list[float]:
    """``Reranker(repo).score`` in a new Python with an empty Hugging Face cache, downloading from ``hub``
    (whose download log starts empty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    code = (
        "import json\nfrom crossrank import Reranker\n"
        f"print(json.dumps(Reranker({repo!r}).score('crocs', {DOCS!r}).tolist()))\n"
    )
    hub.downloads.clear()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    scores: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return scores


@pytest.mark.integration  # starts a process
@pytest.mark.parametrize(("repo", "location"), [("org/onnx-data", "model.onnx_data"), ("org/onnx-dot-data", "model.onnx.data")])
def test_the_hub_download_fetches_the_data_file(
    hub: FakeHub, expected: np.ndarray, tmp_path: Path, repo: str, location: str
) -> None:
    scores = _score_in_a_fresh_process(hub, tmp_path, repo)
    assert f"onnx/{location}" in hub.downloads and not any(f.endswith(".safetensors") for f in hub.downloads)
    assert np.allclose(scores, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_openvino_reads_the_external_data_from_the_path(
    bert_dir: Path, single_file: Path, expected: np.ndarray, tmp_path: Path, mode: str
) -> None:
    pytest.importorskip("openvino")
    repo = _ship_external(bert_dir, single_file, tmp_path / "repo", "model.onnx_data")
    reranker = Reranker(repo, cache_dir=tmp_path / "cache", runtime="openvino", mode=mode)  # type: ignore[arg-type]
    tolerance = 1e-4 if reranker.choice.precision == "f32" else 5e-2  # bf16 keeps the ranking, not the digits
    assert np.allclose(reranker.score("crocs", DOCS), expected, atol=tolerance)


@pytest.mark.integration  # starts a process
def test_a_sharded_repository_is_fetched_whole_and_exported(hub: FakeHub, expected: np.ndarray, tmp_path: Path) -> None:
    scores = _score_in_a_fresh_process(hub, tmp_path, "org/sharded")
    assert "model.safetensors.index.json" in hub.downloads
    assert len([f for f in hub.downloads if f.startswith("model-") and f.endswith(".safetensors")]) > 1
    assert np.allclose(scores, expected, atol=1e-5)
