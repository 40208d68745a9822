"""The real huggingface_hub download path, against a loopback fake hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.models.export import cached_export
from crossrank.models.resolve import resolve_model
from crossrank.models.synthetic import build_random_model
from fakehub import FakeHub

DOCS = ["Crocs Kids' Baya Clog", "Crocs Specialist Vent Work", "lemon cake"]


def _onnx_repo(source: Path, cache: Path, target: Path) -> Path:
    """A hub-style repository holding an ONNX export and the tokenizer, no weights."""
    (target / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, target / name)
    exported = cached_export(resolve_model(source), task="sequence-classification", cache_dir=cache)
    shutil.copy(exported, target / "onnx" / "model.onnx")
    return target


def _with_weights(source: Path, repo: Path) -> Path:
    for item in source.iterdir():
        if item.is_file() and not (repo / item.name).exists():
            shutil.copy(item, repo / item.name)
    return repo


@pytest.fixture(scope="module")
def hub(bert_dir: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    root = tmp_path_factory.mktemp("hub")
    other = build_random_model(root / "v2-weights", layers=2, seed=5, initializer_range=0.2)
    repos = {
        "org/tiny-ce": {
            "main": _onnx_repo(bert_dir, model_cache, root / "main"),
            "v2": _onnx_repo(other, model_cache, root / "v2"),
        },
        "org/weights-only": {"main": bert_dir},
        "org/onnx-and-weights": {"main": _with_weights(bert_dir, _onnx_repo(bert_dir, model_cache, root / "both"))},
    }
    with FakeHub(repos) as server:
        yield server


def _score_in_subprocess(
    hub: FakeHub, hf_home: Path, model: str, revision: str | None = None, options: str = ""
) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(hf_home), HF_HUB_DISABLE_PROGRESS_BARS="1")
    code = (
        "import json, sys\nfrom crossrank import Reranker\n"
        f"r = Reranker({model!r}, revision={revision!r}{', ' + options if options else ''})\n"
        f"print(json.dumps(r.score('crocs', {DOCS!r}).tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    scores: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return scores


def test_download_then_load_from_cache_without_downloading_again(
    hub: FakeHub, bert_dir: Path, model_cache: Path, tmp_path: Path
) -> None:
    hub.downloads.clear()
    first = _score_in_subprocess(hub, tmp_path / "hf", "org/tiny-ce")
    assert "onnx/model.onnx" in hub.downloads and "config.json" in hub.downloads
    assert not any(f.endswith(".safetensors") for f in hub.downloads)  # ONNX repos: no weights fetched
    expected = Reranker(bert_dir, cache_dir=model_cache).score("crocs", DOCS)
    assert np.allclose(first, expected, atol=1e-6)
    assert list((tmp_path / "hf" / "hub").glob("models--org--tiny-ce/snapshots/*/onnx/model.onnx"))
    hub.downloads.clear()
    assert np.allclose(_score_in_subprocess(hub, tmp_path / "hf", "org/tiny-ce"), first)
    assert hub.downloads == []


def test_revision_pinning_selects_the_other_weights(hub: FakeHub, tmp_path: Path) -> None:
    main = _score_in_subprocess(hub, tmp_path / "hf", "org/tiny-ce")
    v2 = _score_in_subprocess(hub, tmp_path / "hf", "org/tiny-ce", revision="v2")
    by_commit = _score_in_subprocess(hub, tmp_path / "hf", "org/tiny-ce", revision=FakeHub.commit("org/tiny-ce", "v2"))
    assert not np.allclose(main, v2)
    assert np.allclose(v2, by_commit)


def test_a_repository_without_onnx_is_downloaded_and_exported_once(
    hub: FakeHub, bert_dir: Path, model_cache: Path, tmp_path: Path
) -> None:
    hub.downloads.clear()
    scores = _score_in_subprocess(hub, tmp_path / "hf", "org/weights-only")
    assert "model.safetensors" in hub.downloads
    assert np.allclose(scores, Reranker(bert_dir, cache_dir=model_cache).score("crocs", DOCS), atol=1e-6)
    exports = list((tmp_path / "hf" / "crossrank" / "onnx").glob("*/model.onnx"))
    assert len(exports) == 1
    stamp = exports[0].stat().st_mtime_ns
    _score_in_subprocess(hub, tmp_path / "hf", "org/weights-only")
    assert exports[0].stat().st_mtime_ns == stamp


def test_the_torch_runtime_fetches_the_weights_and_not_the_onnx_file(
    hub: FakeHub, bert_dir: Path, model_cache: Path, tmp_path: Path
) -> None:
    hub.downloads.clear()
    scores = _score_in_subprocess(hub, tmp_path / "hf", "org/onnx-and-weights", options="runtime='torch', providers=['cpu']")
    assert "model.safetensors" in hub.downloads and "onnx/model.onnx" not in hub.downloads
    assert np.allclose(scores, Reranker(bert_dir, cache_dir=model_cache).score("crocs", DOCS), atol=1e-5)
    assert not list((tmp_path / "hf" / "crossrank" / "onnx").glob("*/model.onnx"))  # nothing exported


def test_unknown_repository_and_revision_are_model_not_found(hub: FakeHub, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"))
    for model, revision in (("org/no-such-model", None), ("org/tiny-ce", "no-such-tag")):
        code = f"from crossrank import Reranker\nReranker({model!r}, revision={revision!r})"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "ModelNotFound" in out.stderr, out.stderr
