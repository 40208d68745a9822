"""A sentence-transformers CrossEncoder module stack (``modules.json``), read from its own files.

A modular CrossEncoder (e.g. the Ettin rerankers) scores a pair with a transformer body and
the modules listed in ``modules.json``: Transformer → Pooling(cls) → Dense(GELU, no bias) →
LayerNorm → Dense(H, 1) writing ``scores``. Each module's configuration is read from its
own ``config.json``, never assumed; a module or setting crossrank cannot reproduce exactly is
refused with what was found. Nothing heavy is imported here: the torch side is
:mod:`crossrank.models.st_torch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossrank.errors import ModelError
from crossrank.models.config import read_json

#: pooling modes reproduced exactly (sentence-transformers' Pooling, right-padded batches)
POOLING_MODES = ("cls", "mean")
#: Dense activations, by sentence-transformers' saved class path
ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.GELU": "gelu",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.activation.ReLU": "relu",
}
_DENSE_DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"  # sentence-transformers' Dense default
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class StModule:
    """One module after the transformer body: its kind, directory and the settings it uses."""

    kind: str  #: "pooling" | "dense" | "layer_norm"
    path: str  #: relative to the model directory
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> str | None:
        """The file name of this module's weights (dense and layer_norm), else ``None``."""
        return self.settings.get("weights")


def _class_name(module_type: str) -> str:
    return module_type.rsplit(".", 1)[-1]


def is_cross_encoder_stack(directory: Path) -> bool:
    """True when ``modules.json`` describes a CrossEncoder (not a bi-encoder)."""
    st = read_json(directory / "config_sentence_transformers.json")
    if st.get("model_type") == "CrossEncoder":
        return True
    entries = read_modules(directory)
    return any(_class_name(str(e.get("type", ""))) == "LogitScore" for e in entries) or any(
        read_json(directory / str(e.get("path", "")) / "config.json").get("module_output_name") == "scores"
        for e in entries
    )


def read_modules(directory: Path) -> list[dict[str, Any]]:
    path = directory / "modules.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); re-download the model") from exc
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise ModelError(f"{path} should hold a list of modules")
    return sorted(data, key=lambda e: int(e.get("idx", 0)))


def module_types(directory: Path) -> list[str]:
    """The class names in ``modules.json``, in order (for messages)."""
    return [_class_name(str(e.get("type", "?"))) for e in read_modules(directory)]


def _pooling(directory: Path, path: str) -> StModule:
    config = read_json(directory / path / "config.json")
    mode = config.get("pooling_mode")
    if mode is None:  # the layout before sentence-transformers 5: one boolean per mode
        chosen = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                              "weightedmean_tokens", "lasttoken") if config.get(f"pooling_mode_{m}")]
        mode = [{"cls_token": "cls", "mean_tokens": "mean"}.get(m, m) for m in chosen]
    modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ModelError(
            f"{directory / path / 'config.json'} pools by {modes}; crossrank reproduces exactly one of "
            f"{', '.join(POOLING_MODES)}"
        )
    if config.get("include_prompt", True) is not True:
        raise ModelError(f"{directory / path / 'config.json'}: include_prompt=false is not supported")
    return StModule("pooling", path, {"mode": modes[0]})


def _weights(directory: Path, path: str) -> str:
    for name in WEIGHT_NAMES:
        if (directory / path / name).is_file():
            return name
    raise ModelError(
        f"{directory / path} holds no weights ({' or '.join(WEIGHT_NAMES)}); its trained head would be "
        f"missing. Re-download the model with all its module folders."
    )


def _dense(directory: Path, path: str) -> StModule:
    config = read_json(directory / path / "config.json")
    activation = str(config.get("activation_function", _DENSE_DEFAULT_ACTIVATION))
    if activation not in ACTIVATIONS:
        raise ModelError(
            f"{directory / path / 'config.json'} uses activation {activation!r}; crossrank supports "
            f"{', '.join(sorted(ACTIVATIONS))}"
        )
    if config.get("use_residual"):
        raise ModelError(f"{directory / path / 'config.json'}: a residual Dense is not supported")
    try:
        settings = {
            "in_features": int(config["in_features"]),
            "out_features": int(config["out_features"]),
            "bias": bool(config.get("bias", True)),
            "activation": ACTIVATIONS[activation],
            "input": str(config.get("module_input_name", "sentence_embedding")),
            "output": str(config.get("module_output_name", config.get("module_input_name", "sentence_embedding"))),
            "weights": _weights(directory, path),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{directory / path / 'config.json'} lacks in_features/out_features ({exc})") from exc
    return StModule("dense", path, settings)


def _layer_norm(directory: Path, path: str) -> StModule:
    config = read_json(directory / path / "config.json")
    if not isinstance(config.get("dimension"), int):
        raise ModelError(f"{directory / path / 'config.json'} lacks the LayerNorm 'dimension'")
    return StModule("layer_norm", path, {"dimension": config["dimension"], "weights": _weights(directory, path)})


_READERS = {"Pooling": _pooling, "Dense": _dense, "LayerNorm": _layer_norm}


def read_stack(directory: Path) -> tuple[StModule, ...]:
    """The modules after the Transformer body, each from its own config; refuses what it cannot run.

    The stack must start with the body (``Transformer`` at the model's root), use only
    Pooling, Dense and LayerNorm, and end with a Dense of one output written to ``scores``.
    """
    entries = read_modules(directory)
    names = [_class_name(str(e.get("type", ""))) for e in entries]
    if not entries or names[0] != "Transformer" or str(entries[0].get("path", "")) not in ("", "."):
        raise ModelError(f"{directory / 'modules.json'} does not start with a Transformer at the model root: {names}")
    unknown = [n for n in names[1:] if n not in _READERS]
    if unknown:
        raise ModelError(
            f"{directory / 'modules.json'} holds modules crossrank cannot run: {', '.join(unknown)} "
            f"(stack {' → '.join(names)}; supported after the Transformer: {', '.join(_READERS)})"
        )
    stack = tuple(_READERS[n](directory, str(e.get("path", ""))) for n, e in zip(names[1:], entries[1:]))
    last = stack[-1] if stack else None
    if last is None or last.kind != "dense" or last.settings["output"] != "scores" or last.settings["out_features"] != 1:
        raise ModelError(
            f"{directory / 'modules.json'} does not end with a Dense of one output written to 'scores' "
            f"(stack {' → '.join(names)}): no relevance logit to read"
        )
    if stack[0].kind != "pooling":
        raise ModelError(f"{directory / 'modules.json'}: the Transformer must be followed by Pooling ({names})")
    return stack
