"""The base model of a training run: a cross-encoder, or an encoder body that gets a new head.

The reference is resolved the way every crossrank model is (hub id, catalogue alias, local
directory) with its weights, checked to be a text encoder that transformers can put a
sequence-classification head on, and copied as a plain Hugging Face directory (config,
weights, tokenizer): a sentence-transformers bi-encoder's own ``modules.json`` (pooling
layers) would otherwise make the trainer rebuild the bi-encoder instead of a cross-encoder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from crossrank.errors import ModelError
from crossrank.extras import require
from crossrank.models.config import ModelConfig, read_json
from crossrank.models.resolve import WEIGHT_FILES, resolve_model

#: what a cross-encoder directory needs besides its weights
_PLAIN_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json",
)  # fmt: skip
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


@dataclass(frozen=True)
class BaseModel:
    name: str  #: the reference the user gave
    directory: Path  #: the plain copy the trainer loads
    model_type: str
    new_head: bool  #: True when the base had no classification head (it is initialised at random)


def _has_head(config: dict[str, object]) -> bool:
    architectures = config.get("architectures") or []
    return isinstance(architectures, list) and any(str(a).endswith("ForSequenceClassification") for a in architectures)


def check_text_encoder(directory: Path, name: str) -> dict[str, object]:
    """The model's ``config.json``, or :class:`ModelError` saying why it cannot be trained as a cross-encoder."""
    transformers = require("transformers", "train", "Training a cross-encoder")
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    config = read_json(directory / "config.json")
    if not config:
        raise ModelError(f"{name} has no config.json: it is not a Hugging Face model directory")
    model_type = str(config.get("model_type", ""))
    if model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ModelError(
            f"{name} is a {model_type or 'model of unknown type'!r} model, not a text encoder that can score "
            "(query, document) pairs: pass a cross-encoder or an encoder body such as BERT, MiniLM or XLM-RoBERTa"
        )
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelError(f"{name} has no text tokenizer ({', '.join(_TOKENIZER_FILES)}): it is not a text encoder")
    del transformers
    return config


def prepare_base(model: str | Path, target: Path, *, revision: str | None = None) -> BaseModel:
    """Resolve ``model``, check it, and copy its plain Hugging Face files to ``target``."""
    files = resolve_model(model, revision=revision, weights=True)
    config = check_text_encoder(files.directory, str(model))
    weights = files.weights_path
    if weights is None or weights.name not in WEIGHT_FILES:
        raise ModelError(f"{model} has no single weights file ({' or '.join(WEIGHT_FILES)}) to train from")
    head = _has_head(config)
    labels = ModelConfig.read(files.directory).num_labels
    if head and labels != 1:
        raise ModelError(f"{model} has a {labels}-label classification head; reranker training needs one "
                         "relevance logit (a cross-encoder such as ms-marco-MiniLM-L6-v2, or an encoder body)")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in (*_PLAIN_FILES, weights.name):
        if (files.directory / name).is_file():
            shutil.copy(files.directory / name, target / name)
    if not head:  # a body: the trainer adds a one-logit head
        config = {k: v for k, v in config.items() if k not in ("architectures", "id2label", "label2id")}
        (target / "config.json").write_text(json.dumps(config, indent=2))
    return BaseModel(str(model), target, str(config.get("model_type")), new_head=not head)
