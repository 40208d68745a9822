"""crossrank's scores against the reference implementations (transformers, sentence-transformers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from crossrank import Reranker
from tolerances import assert_fp32_parity, assert_probability_parity

QUERY = "which shoes are good for walking in the rain"
DOCS = [
    "Crocs Jibbitz 5-Pack Alien Shoe Charms",
    "Crocs Specialist Vent Work",
    "Crocs Kids' Baya Clog",
    "Waterproof hiking boots with a rubber sole keep your feet dry on long walks in wet weather.",
    "",
    "A recipe for lemon cake with a crunchy sugar glaze, baked in a loaf tin for fifty minutes.",
    "rain",
]


def reference_logits(directory: Path, query: str, docs: list[str], max_length: int = 512) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).float().eval()  # fp32 whatever is stored
    batch = tokenizer([query] * len(docs), docs, padding=True, truncation="only_second",
                      max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return np.asarray(model(**batch).logits.numpy(), dtype=np.float64)


@pytest.mark.parametrize("fixture", ["bert_reranker", "xlmr_reranker"])
def test_raw_scores_equal_transformers_logits(fixture: str, request: pytest.FixtureRequest) -> None:
    reranker: Reranker = request.getfixturevalue(fixture)
    directory = request.getfixturevalue(fixture.replace("_reranker", "_dir"))
    ours = reranker.score(QUERY, DOCS, activation="none")
    ref = reference_logits(directory, QUERY, DOCS)[:, 0]
    print(f"{fixture}: max |crossrank - transformers| = {np.abs(ours - ref).max():.2e}")
    assert_fp32_parity(ours, ref)
    assert np.ptp(ref) > 1e-2  # the random model must discriminate, or the test proves little


def test_xlmr_graph_has_no_token_type_ids(xlmr_reranker: Reranker, bert_reranker: Reranker) -> None:
    assert "token_type_ids" not in xlmr_reranker.runtime.input_names
    assert "token_type_ids" in bert_reranker.runtime.input_names


@pytest.mark.parametrize("fixture", ["bert_reranker", "xlmr_reranker"])
def test_sigmoid_scores_equal_sentence_transformers_cross_encoder(fixture: str, request: pytest.FixtureRequest) -> None:
    reranker: Reranker = request.getfixturevalue(fixture)
    directory = request.getfixturevalue(fixture.replace("_reranker", "_dir"))
    ce = CrossEncoder(str(directory), device="cpu")
    ref = ce.predict([(QUERY, d) for d in DOCS], batch_size=3)
    assert_probability_parity(reranker.score(QUERY, DOCS), ref)


def test_two_label_model_scores_are_the_softmax_positive_probability(bert2_dir: Path, model_cache: Path) -> None:
    reranker = Reranker(bert2_dir, cache_dir=model_cache)
    logits = reference_logits(bert2_dir, QUERY, DOCS)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert_probability_parity(reranker.score(QUERY, DOCS), probs[:, 1])


def test_truncated_scores_equal_transformers_with_only_second_truncation(bert_dir: Path, model_cache: Path) -> None:
    reranker = Reranker(bert_dir, cache_dir=model_cache, max_length=24)
    docs = [" ".join(["rain boots keep feet dry"] * 20), "short"]
    ref = reference_logits(bert_dir, QUERY, docs, max_length=24)[:, 0]
    assert_fp32_parity(reranker.score(QUERY, docs, activation="none"), ref)


def test_half_precision_checkpoint_exports_an_fp32_graph(bert_dir: Path, tmp_path: Path) -> None:
    """transformers loads an fp16 checkpoint as fp16; the exact mode must still run fp32."""
    import onnx

    half = shutil.copytree(bert_dir, tmp_path / "fp16-checkpoint")  # tokenizer files; the weights are replaced
    AutoModelForSequenceClassification.from_pretrained(str(bert_dir)).half().save_pretrained(str(half))
    reranker = Reranker(half, mode="exact", cache_dir=tmp_path / "cache")
    graph = onnx.load(str(reranker.runtime.path))
    kinds = {init.data_type for init in graph.graph.initializer if init.dims}
    assert onnx.TensorProto.FLOAT16 not in kinds and onnx.TensorProto.FLOAT in kinds
    ref = reference_logits(half, QUERY, DOCS)[:, 0]
    assert_fp32_parity(reranker.score(QUERY, DOCS, activation="none"), ref)
