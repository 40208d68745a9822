"""Model loading: local directories, ONNX in the repo, export-once caching, clear errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crossrank import MissingExtra, ModelError, ModelNotFound, Reranker
from crossrank.models.export import cached_export
from crossrank.models.first_token import first_token_graph
from crossrank.models.resolve import resolve_model


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_export_runs_once_then_the_cache_is_reused(bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="crossrank.models.export"):
        first = Reranker(bert_dir, cache_dir=cache)
    assert sum("exporting" in r.message for r in caplog.records) == 1
    exported = sorted(cache.glob("onnx/*/model.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crossrank.models.export"):
        second = Reranker(bert_dir, cache_dir=cache)
    assert not any("exporting" in r.message for r in caplog.records)
    assert exported[0].stat().st_mtime_ns == stamp
    assert second.runtime.path == first.runtime.path  # the export, cut to the first token (once)
    assert first.runtime.path == first_token_graph(exported[0], cache / "first-token")


def test_the_cache_key_follows_the_weights(bert_dir: Path, tmp_path: Path) -> None:
    """A copy of the same weights elsewhere reuses the export; changed weights get a new one."""
    cache = tmp_path / "cache"
    copy = _copy_model(bert_dir, tmp_path / "copy")
    files_a, files_b = resolve_model(bert_dir), resolve_model(copy)
    assert cached_export(files_a, task="sequence-classification", cache_dir=cache) == cached_export(
        files_b, task="sequence-classification", cache_dir=cache
    )
    other = tmp_path / "other"
    from crossrank.models.synthetic import build_random_model

    build_random_model(other, layers=1, seed=3)
    assert cached_export(resolve_model(other), task="sequence-classification", cache_dir=cache) != cached_export(
        files_a, task="sequence-classification", cache_dir=cache
    )


def test_an_onnx_file_in_the_repo_is_used_without_export(bert_dir: Path, model_cache: Path, tmp_path: Path) -> None:
    exported = cached_export(resolve_model(bert_dir), task="sequence-classification", cache_dir=model_cache)
    repo = tmp_path / "repo"
    (repo / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(bert_dir / name, repo / name)
    shutil.copy(exported, repo / "onnx" / "model.onnx")
    cache = tmp_path / "fresh-cache"
    reranker = Reranker(repo, cache_dir=cache)
    assert reranker.runtime.path == first_token_graph(repo / "onnx" / "model.onnx", cache / "first-token")
    assert not (cache / "onnx").exists()  # nothing exported
    reference = Reranker(bert_dir, cache_dir=model_cache)
    assert np.allclose(reranker.score("q", ["a", "b c"]), reference.score("q", ["a", "b c"]))


def test_file_url_is_accepted(bert_dir: Path, model_cache: Path) -> None:
    assert Reranker(f"file://{bert_dir}", cache_dir=model_cache).score("q", ["d"]).shape == (1,)


def test_corrupt_onnx_file_gives_a_clear_error(bert_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "corrupt"
    (repo / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(bert_dir / name, repo / name)
    (repo / "onnx" / "model.onnx").write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="corrupt or incomplete"):
        Reranker(repo)


def test_missing_model_files_give_clear_errors(bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        Reranker(tmp_path / "nowhere")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(bert_dir / "config.json", no_weights / "config.json")
    with pytest.raises(ModelError, match="neither an ONNX file"):
        Reranker(no_weights, cache_dir=tmp_path / "c")
    no_tokenizer = _copy_model(bert_dir, tmp_path / "no-tokenizer")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink()
    with pytest.raises(ModelError, match="tokenizer"):
        Reranker(no_tokenizer, cache_dir=tmp_path / "c")


def test_missing_export_extra_names_the_pip_install(bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'crossrank\[export\]'"):
        Reranker(bert_dir, cache_dir=tmp_path / "fresh-cache")


@pytest.mark.integration  # starts a process
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", None])
def test_unreachable_hub_fails_fast_with_advice(endpoint: str | None, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    else:
        env["HF_HUB_OFFLINE"] = "1"
    code = (
        "from crossrank import Reranker, HubUnavailable\n"
        "try:\n    Reranker('cross-encoder/ms-marco-MiniLM-L6-v2')\n"
        "except HubUnavailable as exc:\n    print('HUB-UNAVAILABLE', exc)\n"
    )
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60, "never hang"
    assert "HUB-UNAVAILABLE" in out.stdout, out.stderr
    assert "--model DIR" in out.stdout and "from disk" in out.stdout


@pytest.mark.integration  # starts a process
def test_unknown_hub_repository_is_model_not_found_or_unavailable(tmp_path: Path) -> None:
    """Offline, an unknown repo cannot be told apart from a real one: the error says the hub is unreachable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    code = "from crossrank import Reranker\nReranker('nobody/no-such-model')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "HubUnavailable" in out.stderr and "nobody/no-such-model" in out.stderr


# -- a model without a trained relevance head is refused, never given a random one ---------------
def _edit_config(directory: Path, **changes: object) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def _without_head(bert_dir: Path, target: Path, weights: str) -> Path:
    """``bert_dir`` (a BertForSequenceClassification) saved without its classifier tensors."""
    from safetensors.torch import load_file, save_file

    model = _copy_model(bert_dir, target)
    tensors = {k: v for k, v in load_file(str(model / "model.safetensors")).items() if not k.startswith("classifier.")}
    (model / "model.safetensors").unlink()
    if weights == "safetensors":
        save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    else:
        import torch

        torch.save(tensors, str(model / "pytorch_model.bin"))
    return model


@pytest.mark.parametrize("runtime", [None, "torch"])
def test_a_bi_encoder_is_refused_naming_its_architecture(minilm_dir: Path, tmp_path: Path, runtime: str | None) -> None:
    with pytest.raises(ModelError) as caught:
        Reranker(minilm_dir, cache_dir=tmp_path / "cache", runtime=runtime)
    message = str(caught.value)
    assert "BertModel" in message and "not a cross-encoder" in message
    assert "crossrank.Encoder" in message and "cross-encoder/ms-marco-MiniLM-L6-v2" in message
    assert not (tmp_path / "cache" / "onnx").exists()  # refused before any export


def _openvino_runtimes() -> list[str]:
    import importlib.util

    return ["openvino"] if importlib.util.find_spec("openvino") is not None else []


@pytest.mark.parametrize("runtime", ["onnxruntime", *_openvino_runtimes()])
def test_a_repository_shipping_a_bi_encoder_onnx_graph_is_refused_at_load(
    minilm_dir: Path, model_cache: Path, tmp_path: Path, runtime: str
) -> None:
    repo = tmp_path / "bi-onnx"
    (repo / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (minilm_dir / name).is_file():
            shutil.copy(minilm_dir / name, repo / name)
    embeddings = cached_export(resolve_model(minilm_dir), task="feature-extraction", cache_dir=model_cache)
    shutil.copy(embeddings, repo / "onnx" / "model.onnx")  # last_hidden_state [batch, sequence, 384]
    with pytest.raises(ModelError) as caught:  # at load, not at the first score
        Reranker(repo, cache_dir=tmp_path / "cache", runtime=runtime)
    message = str(caught.value)
    assert "last_hidden_state" in message and "384]" in message and "bi-encoder" in message
    assert "crossrank.Encoder" in message


def test_score_output_shapes() -> None:
    from crossrank.models.load import check_score_output

    shapes: list[list[int | str | None]] = [["batch", 1], ["batch", 2], ["batch"], [None, None], ["batch", "labels"]]
    for fine in shapes:
        check_score_output("m", "logits", fine)
    shapes = [["batch", 384], ["batch", "sequence", 384], [None, None, None]]
    for embeddings in shapes:
        with pytest.raises(ModelError, match="not a reranker"):
            check_score_output("m", "sentence_embedding", embeddings)


def test_a_causal_lm_is_refused(bert_dir: Path, tmp_path: Path) -> None:
    model = _copy_model(bert_dir, tmp_path / "causal")
    _edit_config(model, architectures=["Qwen2ForCausalLM"])
    with pytest.raises(ModelError, match=r"Qwen2ForCausalLM[\s\S]*LLM rerankers"):
        Reranker(model, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "onnx").exists()


def test_a_classifier_saved_without_its_head_weights_is_refused(bert_dir: Path, tmp_path: Path) -> None:
    """Read from the safetensors header when there is one, else from transformers' loading report."""
    headless = _without_head(bert_dir, tmp_path / "st", "safetensors")
    _edit_config(headless, architectures=None)  # nothing to tell from the config: the weights decide
    with pytest.raises(ModelError, match="no trained classifier weights"):
        Reranker(headless, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "onnx").exists()
    pickled = _without_head(bert_dir, tmp_path / "bin", "bin")
    with pytest.raises(ModelError, match=r"no trained classifier weights[\s\S]*classifier\.(bias|weight)"):
        Reranker(pickled, cache_dir=tmp_path / "cache")  # found by the exporter
    assert list((tmp_path / "cache" / "onnx").glob("*/model.onnx")) == []
    with pytest.raises(ModelError, match="no trained classifier weights"):
        Reranker(pickled, runtime="torch")  # and by the torch runtime


def test_a_trained_body_with_its_saved_head_loads(tmp_path: Path, model_cache: Path) -> None:
    """A cross-encoder built from the MiniLM body saves the head it creates: a real, loadable model."""
    from crossrank.models.synthetic import build_random_model, trained_minilm_dir

    model = build_random_model(tmp_path / "trained-body", body_from=trained_minilm_dir(), layers=6)
    assert Reranker(model, cache_dir=model_cache).score("q", ["d", "e"]).shape == (2,)
