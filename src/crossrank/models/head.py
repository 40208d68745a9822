"""Refuse a model that has no trained scoring head, before anything is exported or run.

A cross-encoder's score is the logit of its trained classifier. Loading a bi-encoder (e.g.
all-MiniLM-L6-v2, a ``BertModel``), a base language model (``BertForMaskedLM``) or a causal
LM as ``AutoModelForSequenceClassification`` gives it a freshly initialised, random head:
scores that mean nothing and change from one export to the next. Such a model is refused
with what was found and what to use instead, from the model's own files:

* ``config.json``'s ``architectures`` must name a ``*ForSequenceClassification`` class;
* the weights must hold the classifier tensors (read from the safetensors header, no torch);
* when transformers loads the weights (export, torch runtime), no weight may be missing:
  :func:`refuse_fresh_weights` checks its loading report.

Heads other than ``*ForSequenceClassification`` (sentence-transformers module stacks, LLM
yes/no rerankers) are refused too, never guessed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from pathlib import Path

from crossrank.errors import ModelError
from crossrank.models.config import read_json

#: module names that transformers' sequence-classification heads use for their weights
HEAD_MODULES = frozenset({"classifier", "score", "classification_head", "logits_proj", "pre_classifier"})
SUPPORTED_HEAD = "ForSequenceClassification"
EXAMPLES = "cross-encoder/ms-marco-MiniLM-L6-v2 or BAAI/bge-reranker-base"
_HEADER_LIMIT = 100 << 20  # a safetensors header is JSON; larger than this is not one


def _advice(architecture: str, directory: Path) -> str:
    """What to use instead of a model whose architecture has no relevance head."""
    instead = f"Rerank with a trained cross-encoder such as {EXAMPLES}."
    if (directory / "modules.json").is_file() and architecture.endswith("Model"):
        return (
            "It looks like a sentence-transformers model: a bi-encoder embeds texts (crossrank.Encoder, or "
            "'type: bi-encoder' in a server config), or a cross-encoder whose scoring head is a module stack "
            f"(modules.json), which crossrank does not run yet. {instead}"
        )
    if architecture.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
        return f"LLM rerankers that score yes/no tokens are not supported yet. {instead}"
    if architecture.endswith(("ForMaskedLM", "ForPreTraining")):
        return f"It is a pre-trained language model, not fine-tuned for relevance. {instead}"
    return f"Embed with it through crossrank.Encoder if it is a bi-encoder. {instead}"


def safetensors_names(weights: Path) -> list[str] | None:
    """The tensor names in a safetensors file or sharded index, without loading any tensor.

    A safetensors file starts with an 8-byte little-endian header length and a JSON header
    mapping tensor names to their offsets. ``None`` for other formats (``pytorch_model.bin``).
    """
    if weights.name.endswith(".safetensors.index.json"):
        weight_map = read_json(weights).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelError(f"{weights} has no 'weight_map'; re-download the model")
        return list(weight_map)
    if not weights.name.endswith(".safetensors"):
        return None
    try:
        with weights.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > _HEADER_LIMIT:
                raise ValueError(f"header length {size}")
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelError(f"{weights} is not a readable safetensors file ({exc}); re-download the model") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{weights} is not a readable safetensors file; re-download the model")
    return [name for name in header if name != "__metadata__"]


def _is_head(name: str) -> bool:
    return any(part in HEAD_MODULES for part in name.split("."))


def check_scoring_head(name: str, directory: Path, weights: Path | None) -> None:
    """Raise :class:`ModelError` unless the files declare a trained sequence-classification head.

    Reads ``config.json`` and (for safetensors weights) the tensor names; imports nothing heavy.
    """
    config = read_json(directory / "config.json")
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures:
        found = [str(a) for a in architectures]
        if not any(a.endswith(SUPPORTED_HEAD) for a in found):
            raise ModelError(
                f"{name} is not a cross-encoder: its config.json declares {', '.join(found)}, which has no "
                f"trained relevance classifier (crossrank scores with a *{SUPPORTED_HEAD} head), so its scores "
                f"would come from a randomly initialised head. {_advice(found[0], directory)}"
            )
    names = safetensors_names(weights) if weights is not None else None
    if names is not None and not any(_is_head(n) for n in names):
        kind = ", ".join(str(a) for a in architectures) if isinstance(architectures, list) and architectures else (
            f"model_type {config.get('model_type', 'unknown')!r}"
        )
        raise ModelError(
            f"{name} has no trained classifier weights: {weights.name if weights else 'its weights'} holds no "
            f"{'/'.join(sorted(HEAD_MODULES))} tensors ({kind}), so the relevance head would be randomly "
            f"initialised. Save the fine-tuned model with its head (save_pretrained), or rerank with a trained "
            f"cross-encoder such as {EXAMPLES}."
        )


def refuse_fresh_weights(name: str, missing: Collection[str], mismatched: Collection[object] = ()) -> None:
    """Raise :class:`ModelError` when transformers had to initialise weights the checkpoint lacks.

    ``missing`` and ``mismatched`` are transformers' loading report (``output_loading_info=True``).
    """
    fresh = sorted({str(key) for key in missing} | {str(key[0] if isinstance(key, tuple) else key) for key in mismatched})
    if not fresh:
        return
    head = [key for key in fresh if _is_head(key)]
    what = "no trained classifier weights" if head else "weights missing from its checkpoint"
    shown = ", ".join((head or fresh)[:6]) + (" ..." if len(head or fresh) > 6 else "")
    raise ModelError(
        f"{name} has {what}: transformers would initialise {shown} at random, so its scores would mean "
        f"nothing. Use a trained cross-encoder (a *{SUPPORTED_HEAD} model saved with its head), such as {EXAMPLES}."
    )
