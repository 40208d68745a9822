"""The operation counts of `crossrank.bench.work` match what ONNX Runtime multiplies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from crossrank.bench.work import EncoderShape, pair_flops, total_flops
from crossrank.errors import ModelError
from crossrank.models.config import ModelConfig
from crossrank.models.first_token import first_token_graph
from crossrank.models.load import load_model


def _profiled_matrix_flops(path: Path, tokens: int, rows: int, tmp_path: Path) -> int:
    """2·M·K·N summed over every MatMul and Gemm ONNX Runtime ran, read from its profile."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {
        "input_ids": np.full((rows, tokens), 5, dtype=np.int64),  # in every fixture's vocabulary
        "attention_mask": np.ones((rows, tokens), dtype=np.int64),
        "token_type_ids": np.zeros((rows, tokens), dtype=np.int64),
    }
    names = {i.name for i in session.get_inputs()}
    session.run(None, {k: v for k, v in feed.items() if k in names})
    total = 0
    counted = 0
    for event in json.loads(Path(session.end_profiling()).read_text()):
        args = event.get("args", {})
        if event.get("cat") != "Node" or args.get("op_name") not in ("MatMul", "Gemm"):
            continue
        if not event["name"].endswith("_kernel_time"):
            continue
        (first,) = args["input_type_shape"][0].values()  # the activation: [..., M, K]
        (out,) = args["output_type_shape"][0].values()  # [..., M, N]
        total += 2 * int(np.prod(out)) * int(first[-1])
        counted += 1
    assert counted > 0
    return total


@pytest.mark.parametrize("fixture", ["bert_dir", "xlmr_dir", "bert2_dir"])
def test_counts_equal_the_graphs_matrix_products(
    fixture: str, request: pytest.FixtureRequest, model_cache: Path, tmp_path: Path
) -> None:
    loaded = load_model(request.getfixturevalue(fixture), task="sequence-classification", cache_dir=model_cache)
    shape = EncoderShape.from_config(loaded.config)
    cut = first_token_graph(loaded.onnx_path, model_cache / "first-token")
    assert cut != loaded.onnx_path
    for tokens in (5, 24, 61):
        full = _profiled_matrix_flops(loaded.onnx_path, tokens, 3, tmp_path)
        assert full == 3 * pair_flops(shape, tokens)
        pruned = _profiled_matrix_flops(cut, tokens, 3, tmp_path)
        assert pruned == 3 * pair_flops(shape, tokens, first_token=True) < full
    assert total_flops(shape, [5, 24]) == pair_flops(shape, 5) + pair_flops(shape, 24)


def _config(tmp_path: Path, **raw: object) -> ModelConfig:
    (tmp_path / "config.json").write_text(json.dumps(raw))
    return ModelConfig.read(tmp_path)


def test_shape_from_config(tmp_path: Path) -> None:
    minilm = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536, "id2label": {"0": "LABEL_0"}}
    shape = EncoderShape.from_config(_config(tmp_path, **minilm))
    assert shape == EncoderShape(layers=6, hidden=384, intermediate=1536, labels=1)
    # ms-marco-MiniLM-L6-v2, 24 tokens: the 6·(24·S·H² + 4·S²·H) plus the head
    assert pair_flops(shape, 24) == 6 * (24 * 24 * 384**2 + 4 * 24**2 * 384) + 2 * (384**2 + 384)
    # no label fields: transformers' default of two labels; no intermediate_size: 4 x hidden
    two = EncoderShape.from_config(_config(tmp_path, hidden_size=8, num_hidden_layers=1))
    assert (two.intermediate, two.labels) == (32, 2)
    with pytest.raises(ModelError, match="hidden_size"):
        EncoderShape.from_config(_config(tmp_path, num_hidden_layers=2))
