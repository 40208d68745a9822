"""The arithmetic work of scoring pairs: floating-point operations of a BERT-style encoder.

A matrix product of an (M x K) by a (K x N) matrix costs 2·M·K·N operations (one multiply
and one add per term). For a pair of ``S`` tokens through an encoder with hidden size ``H``
and feed-forward size ``I`` (4·H in BERT and XLM-R), each layer does

* ``S·(4·H² + 2·H·I)`` multiply-adds in its dense layers (query, key, value and output
  projections; the two feed-forward matrices), and
* ``2·S²·H`` in attention (query-key scores and the weighted sum of the values),

and the classification head (BERT's pooler or the RoBERTa head, then the label matrix) adds
``H² + H·labels`` for the one token it reads. With ``first_token=True`` the last layer's
output projection and feed-forward block run for token 0 only, as in crossrank's pruned
graph (:mod:`crossrank.models.first_token`). Normalisation, softmax and activations are not
counted: they are a few percent of the work, and a matrix-rate roof ignores them anyway.

``benchmarks/roofline.py`` divides these counts by measured times to show how close each
backend runs to the machine's matrix-multiply rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crossrank.errors import ModelError
from crossrank.models.config import ModelConfig


@dataclass(frozen=True)
class EncoderShape:
    """The sizes that decide an encoder's work."""

    layers: int
    hidden: int
    intermediate: int
    labels: int = 1

    @classmethod
    def from_config(cls, config: ModelConfig) -> EncoderShape:
        """The sizes in a model's ``config.json`` (BERT, RoBERTa, XLM-R style)."""
        raw = config.raw
        try:
            hidden = int(raw["hidden_size"])
            layers = int(raw["num_hidden_layers"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"config.json lacks an encoder size ({exc}); expected hidden_size and num_hidden_layers"
            ) from exc
        return cls(layers, hidden, int(raw.get("intermediate_size", 4 * hidden)), config.num_labels)


def pair_flops(shape: EncoderShape, tokens: int, *, first_token: bool = False) -> int:
    """Floating-point operations to score one pair of ``tokens`` tokens (no padding)."""
    h, i, s = shape.hidden, shape.intermediate, int(tokens)
    projections = 4 * h * h  # query, key, value, output
    feed_forward = 2 * h * i
    attention = 2 * s * s * h
    layer = s * (projections + feed_forward) + attention
    macs = shape.layers * layer + h * h + h * shape.labels
    if first_token:  # the last layer's output projection and feed-forward block: token 0 only
        macs -= (s - 1) * (h * h + feed_forward)
    return 2 * macs


def total_flops(shape: EncoderShape, lengths: Iterable[int], *, first_token: bool = False) -> int:
    """Operations for pairs of these token counts, each scored without padding."""
    return sum(pair_flops(shape, int(n), first_token=first_token) for n in lengths)
