"""The torch side of a sentence-transformers CrossEncoder module stack (export child only).

Builds one ``torch.nn.Module`` from the transformer body (``AutoModel``) and the modules
:func:`crossrank.models.st_stack.read_stack` read from their configs, loading each module's
own weights and refusing missing or unexpected tensors, so the whole stack exports to one
ONNX graph returning one logit per pair. The operations follow sentence-transformers'
Pooling, Dense and LayerNorm modules (right-padded batches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossrank.errors import ModelError
from crossrank.models.head import refuse_fresh_weights
from crossrank.models.remote_code import from_pretrained
from crossrank.models.st_stack import StModule, read_stack


def _state(torch: Any, path: Path) -> dict[str, Any]:
    if path.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    return dict(torch.load(str(path), map_location="cpu", weights_only=True))


def _layer(torch: Any, directory: Path, module: StModule) -> Any:
    nn = torch.nn
    settings = module.settings
    if module.kind == "dense":
        layer = nn.Linear(settings["in_features"], settings["out_features"], bias=settings["bias"])
        prefix = "linear."
    else:
        layer = nn.LayerNorm(settings["dimension"])
        prefix = "norm."
    state = _state(torch, directory / module.path / settings["weights"])
    expected = {prefix + key for key in layer.state_dict()}
    if set(state) != expected:
        raise ModelError(
            f"{directory / module.path / settings['weights']} holds {sorted(state)}, expected {sorted(expected)}: "
            f"its trained weights do not match its config.json"
        )
    layer.load_state_dict({key[len(prefix):]: value for key, value in state.items()})
    return layer


def build_stack_model(directory: Path, input_names: list[str], *, trust_remote_code: bool = False) -> Any:
    """A module mapping ``input_names`` tensors to ``(batch, 1)`` logits, in fp32, eval mode."""
    import torch
    import transformers

    stack = read_stack(directory)
    try:
        body, info = from_pretrained(
            transformers.AutoModel, directory, trust_remote_code, attn_implementation="eager", output_loading_info=True
        )
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not load the transformer body in {directory}: {exc}") from exc
    refuse_fresh_weights(str(directory), info.get("missing_keys", ()), info.get("mismatched_keys", ()))
    activations = {"identity": torch.nn.Identity(), "gelu": torch.nn.GELU(), "tanh": torch.nn.Tanh(),
                   "sigmoid": torch.nn.Sigmoid(), "relu": torch.nn.ReLU()}

    class StackModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.layers = torch.nn.ModuleList(
                [_layer(torch, directory, m) if m.kind != "pooling" else torch.nn.Identity() for m in stack]
            )

        def forward(self, *args: Any) -> Any:
            feed = dict(zip(input_names, args))
            tokens = self.body(**feed).last_hidden_state
            mask = feed["attention_mask"]
            features: dict[str, Any] = {}
            for module, layer in zip(stack, self.layers):
                if module.kind == "pooling":
                    if module.settings["mode"] == "cls":  # the first attended token, as sentence-transformers
                        first = mask.to(torch.int32).argmax(dim=1)
                        pooled = tokens[torch.arange(tokens.shape[0]), first]
                    else:
                        weights = mask.unsqueeze(-1).to(tokens.dtype)
                        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                    features["sentence_embedding"] = pooled
                elif module.kind == "dense":
                    value = layer(features[module.settings["input"]])
                    features[module.settings["output"]] = activations[module.settings["activation"]](value)
                else:
                    features["sentence_embedding"] = layer(features["sentence_embedding"])
            return features["scores"]

    return StackModel().to(torch.float32).eval()
