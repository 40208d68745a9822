"""Encoder embeddings equal sentence-transformers' on the same weights (cosine distance < 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossrank import Encoder
from crossrank.errors import InvalidInput
from crossrank.models.synthetic import build_random_model

TEXTS = [
    "Crocs Kids' Baya Clog",
    "a story about a strong, historically significant female figure who led an army",
    "how do cross-encoders rank passages?",
    "short",
    "Leather hiking boots, waterproof, with a thick rubber sole for rough mountain trails " * 3,
]


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    distance: np.ndarray = 1.0 - (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return distance


def _reference(directory: Path) -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(directory), device="cpu")
    return np.asarray(model.encode(TEXTS, batch_size=2, convert_to_numpy=True))


def test_trained_minilm_matches_sentence_transformers(minilm_dir: Path, minilm_encoder: Encoder) -> None:
    assert minilm_encoder.pooling == "mean" and minilm_encoder.normalize
    ours = minilm_encoder.embed(TEXTS)
    ref = _reference(minilm_dir)
    assert ours.shape == ref.shape == (len(TEXTS), 384)
    assert _cosine_distance(ours, ref).max() < 1e-4
    # normalised like the reference (modules.json has a Normalize module)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(minilm_encoder.embed_query(TEXTS[2]), ours[2], atol=1e-5)


@pytest.fixture(scope="module")
def cls_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random BERT saved as a sentence-transformers model with CLS pooling and no Normalize."""
    out = build_random_model(tmp_path_factory.mktemp("cls-bert"), layers=2, num_labels=None, initializer_range=0.2)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 384,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    return out


def test_random_cls_bert_matches_sentence_transformers(cls_bert_dir: Path, model_cache: Path) -> None:
    encoder = Encoder(cls_bert_dir, cache_dir=model_cache, max_length=128, batch_size=2)
    assert encoder.pooling == "cls" and not encoder.normalize
    ours = encoder.embed(TEXTS)
    ref = _reference(cls_bert_dir)
    assert _cosine_distance(ours, ref).max() < 1e-4
    # not normalised: the raw CLS vector, same magnitude as the reference
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-3)
    # CLS pooling differs from mean pooling on the same weights (the config is really read)
    mean = Encoder(cls_bert_dir, cache_dir=model_cache, max_length=128, pooling="mean").embed(TEXTS)
    assert _cosine_distance(ours, mean).max() > 1e-3


def test_invalid_options(minilm_dir: Path, model_cache: Path) -> None:
    with pytest.raises(InvalidInput, match="batch_size"):
        Encoder(minilm_dir, cache_dir=model_cache, batch_size=0)
    with pytest.raises(InvalidInput, match="threads"):
        Encoder(minilm_dir, cache_dir=model_cache, threads=-1)


def test_scheduler_seams_give_the_library_vectors(minilm_encoder: Encoder) -> None:
    """``tokenize`` + ``infer`` (what the server's scheduler calls, batch by batch in
    ``plan``'s batches) give ``embed``'s vectors, for any subset of rows in any order."""
    everything = minilm_encoder.embed(TEXTS)
    rows = minilm_encoder.tokenize(TEXTS)
    batches = minilm_encoder.plan(rows.lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(TEXTS)))
    np.testing.assert_allclose(minilm_encoder.infer(rows, [2, 0]), everything[[2, 0]], atol=1e-5)
    assert minilm_encoder.embed([]).shape == (0, 384)
