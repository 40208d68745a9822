"""Read what crossrank needs from a model directory's JSON configuration files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrank.errors import ModelError

# Models whose position ids start after the padding index (RoBERTa family): usable
# positions are max_position_embeddings - 2.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "mpnet"}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); delete it or re-download the model") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} should hold a JSON object")
    return data


@dataclass(frozen=True)
class ModelConfig:
    """The parts of ``config.json`` and friends that scoring depends on."""

    model_type: str
    num_labels: int
    max_length: int
    pad_token_id: int | None
    uses_token_type_ids: bool
    raw: dict[str, Any]

    @classmethod
    def read(cls, directory: Path, *, default_max_length: int | None = None) -> ModelConfig:
        config = read_json(directory / "config.json")
        tok_config = read_json(directory / "tokenizer_config.json")
        st_config = read_json(directory / "sentence_bert_config.json")
        model_type = str(config.get("model_type", "unknown"))
        if isinstance(config.get("id2label"), dict):
            num_labels = len(config["id2label"])
        else:
            num_labels = int(config.get("num_labels", 2))  # transformers' default: configs omit 2 labels
        limits: list[int] = []
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0 and model_type not in {"jina_bert", "bert_alibi"}:
            limits.append(positions - (2 if model_type in _OFFSET_POSITIONS else 0))
        tok_max = tok_config.get("model_max_length")
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limits.append(tok_max)
        st_max = st_config.get("max_seq_length")
        if isinstance(st_max, int) and st_max > 0:
            limits.append(st_max)
        if default_max_length is not None:
            limits.append(default_max_length)
        return cls(
            model_type=model_type,
            num_labels=num_labels,
            max_length=min(limits) if limits else 512,
            pad_token_id=config.get("pad_token_id") if isinstance(config.get("pad_token_id"), int) else None,
            uses_token_type_ids=int(config.get("type_vocab_size", 0) or 0) > 1,
            raw=config,
        )
