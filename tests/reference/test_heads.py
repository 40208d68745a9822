"""Scoring heads read from the model's own files: ModernBERT classifiers and sentence-transformers module stacks.

Each family is a tiny random-weight model built from its real configuration class, saved in
the hub layout, loaded through the same path as a hub model, and compared with the reference
implementations (transformers, sentence-transformers' CrossEncoder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

from crossrank import ModelError, Reranker
from crossrank.models.head import read_head
from crossrank.models.synthetic import build_random_model, build_st_cross_encoder
from fakehub import FakeHub
from test_parity import reference_logits
from tolerances import assert_fp32_parity, assert_probability_parity

QUERY = "which shoes are good for walking in the rain"
#: mixed lengths (one longer than ModernBERT's 16-token local window), an empty document, unicode
DOCS = [
    "Crocs Jibbitz 5-Pack Alien Shoe Charms",
    "",
    "Waterproof hiking boots with a rubber sole keep your feet dry on long walks in wet weather, "
    "whatever the season and however far the trail goes.",
    "naïve café 東京 — Straße 🙂",
    "rain",
]


def _cross_encoder_logits(directory: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    ce = CrossEncoder(str(directory), device="cpu")
    return np.asarray(ce.predict(pairs, batch_size=3, activation_fn=torch.nn.Identity()), dtype=np.float64)


@pytest.fixture(scope="module", params=["cls", "mean"])
def modernbert(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_model(
        tmp_path_factory.mktemp(f"modernbert-{request.param}"), architecture="modernbert", layers=2,
        classifier_pooling=request.param, initializer_range=0.2,
    )


@pytest.fixture(scope="module")
def ettin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_st_cross_encoder(tmp_path_factory.mktemp("st") / "ettin", layers=2, initializer_range=0.2)


# -- ModernBERT *ForSequenceClassification (classifier_pooling cls and mean) -----------------------
def test_modernbert_raw_scores_equal_transformers_and_cross_encoder(modernbert: Path, model_cache: Path) -> None:
    reranker = Reranker(modernbert, cache_dir=model_cache, batch_size=3)
    head = read_head("m", modernbert, modernbert / "model.safetensors")
    assert head.kind == "sequence-classification" and head.architecture == "ModernBertForSequenceClassification"
    ours = reranker.score(QUERY, DOCS, activation="none")
    by_transformers = reference_logits(modernbert, QUERY, DOCS)[:, 0]
    by_st = _cross_encoder_logits(modernbert, [(QUERY, d) for d in DOCS])
    print(f"modernbert: max |crossrank - transformers| = {np.abs(ours - by_transformers).max():.2e}, "
          f"|crossrank - CrossEncoder| = {np.abs(ours - by_st).max():.2e}")
    assert_fp32_parity(ours, by_transformers)
    assert_fp32_parity(ours, by_st)
    assert np.ptp(by_transformers) > 1e-2  # the random model discriminates, or the test proves little


def test_modernbert_truncation_cuts_only_the_document(modernbert: Path, model_cache: Path) -> None:
    reranker = Reranker(modernbert, cache_dir=model_cache, max_length=24)
    docs = [" ".join(["rain boots keep feet dry"] * 20), "short", ""]
    ref = reference_logits(modernbert, QUERY, docs, max_length=24)[:, 0]
    assert_fp32_parity(reranker.score(QUERY, docs, activation="none"), ref)


# -- sentence-transformers modular CrossEncoder (Ettin-style) ------------------------------------
def test_st_module_stack_is_read_from_each_module_config(ettin: Path) -> None:
    head = read_head("ettin", ettin, ettin / "model.safetensors")
    assert head.kind == "st-modules"
    assert head.describe() == (
        "st-modules (ModernBertModel → Pooling(cls) → Dense(32→32, gelu) → LayerNorm → Dense(32→1, identity))"
    )
    assert [m.settings.get("bias") for m in head.modules if m.kind == "dense"] == [False, True]


def test_st_module_stack_scores_equal_the_cross_encoder(ettin: Path, model_cache: Path) -> None:
    reranker = Reranker(ettin, cache_dir=model_cache, batch_size=3)
    assert reranker.runtime.input_names == ["input_ids", "attention_mask"]
    ours = reranker.score(QUERY, DOCS, activation="none")
    ref = _cross_encoder_logits(ettin, [(QUERY, d) for d in DOCS])
    print(f"st stack: max |crossrank - CrossEncoder| = {np.abs(ours - ref).max():.2e}")
    assert_fp32_parity(ours, ref)
    assert np.ptp(ref) > 1e-2
    # the default activation is the CrossEncoder's own (sigmoid for one logit)
    default = CrossEncoder(str(ettin), device="cpu").predict([(QUERY, d) for d in DOCS])
    assert_probability_parity(reranker.score(QUERY, DOCS), default)


def test_the_torch_runtime_runs_the_same_module_stack(ettin: Path) -> None:
    """The GPU path (torch) builds the stack the export traces, from the same files."""
    reranker = Reranker(ettin, runtime="torch", providers=["cpu"])
    ref = _cross_encoder_logits(ettin, [(QUERY, d) for d in DOCS])
    assert_fp32_parity(reranker.score(QUERY, DOCS, activation="none"), ref)


def test_st_mean_pooling_stack_equals_the_cross_encoder(tmp_path: Path, model_cache: Path) -> None:
    model = build_st_cross_encoder(tmp_path / "mean", pooling="mean", layers=1, initializer_range=0.2, seed=3)
    ours = Reranker(model, cache_dir=model_cache, batch_size=2).score(QUERY, DOCS, activation="none")
    assert_fp32_parity(ours, _cross_encoder_logits(model, [(QUERY, d) for d in DOCS]))


def test_the_export_cache_follows_the_head_module_weights(ettin: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model = shutil.copytree(ettin, tmp_path / "edited")
    before = Reranker(model, cache_dir=tmp_path / "cache").score(QUERY, DOCS[:3], activation="none")
    tensors = load_file(str(model / "4_Dense" / "model.safetensors"))
    tensors["linear.bias"] = tensors["linear.bias"] + 1.0
    save_file(tensors, str(model / "4_Dense" / "model.safetensors"))
    after = Reranker(model, cache_dir=tmp_path / "cache").score(QUERY, DOCS[:3], activation="none")
    assert np.allclose(after, before + 1.0, atol=1e-4)
    assert len(list((tmp_path / "cache" / "onnx").glob("*/model.onnx"))) == 2


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_stacks_crossrank_cannot_reproduce_are_refused_naming_files_and_heads(ettin: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    unknown = shutil.copytree(ettin, tmp_path / "unknown")
    modules = json.loads((unknown / "modules.json").read_text())
    modules.insert(4, {"idx": 4, "name": "n", "path": "", "type": "sentence_transformers.base.modules.normalize.Normalize"})
    for i, entry in enumerate(modules):
        entry["idx"] = i
    (unknown / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match=r"cannot run: Normalize[\s\S]*Pooling, Dense, LayerNorm"):
        Reranker(unknown, cache_dir=cache)
    activation = shutil.copytree(ettin, tmp_path / "activation")
    _edit(activation / "2_Dense" / "config.json", activation_function="my_code.Swish")
    with pytest.raises(ModelError, match="activation 'my_code.Swish'"):
        Reranker(activation, cache_dir=cache)
    no_weights = shutil.copytree(ettin, tmp_path / "no-weights")
    (no_weights / "3_LayerNorm" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="3_LayerNorm holds no weights"):
        Reranker(no_weights, cache_dir=cache)
    llm = shutil.copytree(ettin, tmp_path / "llm")
    (llm / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_LogitScore",
         "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"},
    ]))
    (llm / "1_LogitScore").mkdir()
    (llm / "1_LogitScore" / "config.json").write_text(json.dumps({"true_token_id": 5, "false_token_id": 6}))
    _edit(llm / "config.json", architectures=["Qwen3ForCausalLM"])
    with pytest.raises(ModelError) as caught:
        Reranker(llm, cache_dir=cache)
    message = str(caught.value)
    assert "LLM yes/no reranker of model_type 'modernbert'" in message and "name the family with template=" in message
    assert "Files found in" in message and "modules.json stacks Transformer → LogitScore" in message
    assert "Heads crossrank runs: sequence-classification" in message and "st-modules" in message
    assert not cache.exists() or not list(cache.glob("onnx/*/model.onnx"))  # all refused before any export


def test_a_bi_encoder_refusal_names_the_files_and_the_supported_heads(minilm_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        Reranker(minilm_dir, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "BertModel" in message and "Files found in" in message and "modules.json stacks Transformer" in message
    assert "Heads crossrank runs: sequence-classification" in message


def test_a_module_stack_loads_from_the_hub_with_its_module_folders(ettin: Path, model_cache: Path, tmp_path: Path) -> None:
    with FakeHub({"org/ettin-tiny": {"main": ettin}}) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1")
        code = ("import json\nfrom crossrank import Reranker\nr = Reranker('org/ettin-tiny')\n"
                f"print(json.dumps(r.score({QUERY!r}, {DOCS!r}, activation='none').tolist()))\n")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert {"4_Dense/model.safetensors", "3_LayerNorm/config.json"} <= set(hub.downloads)
    scores = json.loads(out.stdout.strip().splitlines()[-1])
    assert np.allclose(scores, Reranker(ettin, cache_dir=model_cache).score(QUERY, DOCS, activation="none"), atol=1e-6)
