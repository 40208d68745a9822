"""How close two fp32 engines' scores must be: the one rule every parity test applies.

crossrank's exact mode promises raw scores within 1e-4 of ``transformers``. fp32 engines (torch
with MKL or oneDNN, ONNX Runtime's MLAS, OpenVINO) sum in different orders, and the order depends
on the CPU's vector width, so the rounding drift grows with the size of the activations: on an
AVX2-only EPYC, torch and ONNX Runtime differed by 1.1e-4 on a batch whose largest logit was 11
(the same pair agreed to 1e-6 on AVX-512 CPUs). Hence 1e-4 plus 1e-5 of the batch's largest
score. A wrong head, pooling, input or truncation moves scores by 1e-2 or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the exact mode's contract on raw scores (logits)
FP32_ATOL = 1e-4
#: plus this share of the batch's largest |score|: summation order drifts with the activations' scale
FP32_RTOL = 1e-5
#: probabilities through a sigmoid or a two-way softmax (slope at most 1/4) of logits within FP32_ATOL
PROBABILITY_ATOL = FP32_ATOL / 4


def fp32_tolerance(reference: Any) -> float:
    """The largest difference allowed from ``reference``'s raw scores."""
    scores = np.asarray(reference, dtype=np.float64)
    return FP32_ATOL + FP32_RTOL * (float(np.abs(scores).max()) if scores.size else 0.0)


def assert_fp32_parity(got: Any, reference: Any) -> None:
    """``got``'s raw scores equal ``reference``'s within the exact mode's contract."""
    got, reference = np.asarray(got, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert got.shape == reference.shape, (got.shape, reference.shape)
    diff = float(np.abs(got - reference).max()) if got.size else 0.0
    assert diff <= fp32_tolerance(reference), f"max |difference| {diff:.3g} > {fp32_tolerance(reference):.3g}"


def assert_probability_parity(got: Any, reference: Any) -> None:
    """Probabilities (sigmoid or softmax scores) equal within what the logits' contract allows."""
    got, reference = np.asarray(got, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert got.shape == reference.shape, (got.shape, reference.shape)
    diff = float(np.abs(got - reference).max()) if got.size else 0.0
    assert diff <= PROBABILITY_ATOL, f"max |difference| {diff:.3g} > {PROBABILITY_ATOL:.3g}"
