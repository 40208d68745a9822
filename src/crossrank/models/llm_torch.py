"""The torch side of an LLM yes/no reranker (the export child and the torch runtime): body, last
token, one head row.

The causal LM's body runs on the templated pair; the hidden state of each row's last real
token (``attention_mask.sum(1) - 1``: crossrank pads on the right) is multiplied by
``W_lm[yes] − W_lm[no]`` computed in float64 and stored in fp32 (the ``yes`` row alone when
the family scores one token). A model whose config caps its final logits
(``final_logit_softcapping``, Gemma 2: ``cap · tanh(logit / cap)``) keeps the rows apart and
caps each token's logit before the difference, as its LM head does. The vocabulary projection
is never part of the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossrank.errors import ModelError
from crossrank.models.head import refuse_fresh_weights
from crossrank.models.remote_code import from_pretrained


def build_yes_no_model(
    directory: Path, input_names: list[str], yes: int, no: int | None, *, trust_remote_code: bool = False,
    attention: str | None = "eager",
) -> Any:
    """A module mapping ``input_names`` tensors to ``(batch, 1)`` logits ``h_last · (W[yes] − W[no])``.

    ``attention``: transformers' attention implementation (``eager`` for the ONNX export; ``None``,
    the model's own default, for the torch runtime)."""
    import torch
    import transformers

    auto: Any = transformers.AutoModelForCausalLM
    try:
        lm, info = from_pretrained(
            auto, directory, trust_remote_code, output_loading_info=True, dtype=torch.float32,
            **({"attn_implementation": attention} if attention else {}),
        )
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not load the causal LM in {directory}: {exc}") from exc
    refuse_fresh_weights(str(directory), info.get("missing_keys", ()), info.get("mismatched_keys", ()))
    weight = lm.get_output_embeddings().weight.detach().to(torch.float64)
    if yes >= weight.shape[0] or (no is not None and no >= weight.shape[0]):
        raise ModelError(f"{directory}: token ids {yes}/{no} are outside the vocabulary of {weight.shape[0]}")
    if getattr(lm.get_output_embeddings(), "bias", None) is not None:
        raise ModelError(f"{directory}: an LM head with a bias is not supported")
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:  # (H, 1 or 2): each token's logit is capped before the difference
        rows = torch.stack([weight[yes]] + ([weight[no]] if no is not None else []), dim=1)
    else:  # (H, 1): the difference row, computed in float64
        rows = (weight[yes] - (weight[no] if no is not None else 0)).unsqueeze(1)
    body = lm.get_decoder()

    class YesNoModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.rows = torch.nn.Parameter(rows.to(torch.float32), requires_grad=False)

        def forward(self, *args: Any) -> Any:
            feed = dict(zip(input_names, args))
            hidden = self.body(**feed, use_cache=False).last_hidden_state
            last = feed["attention_mask"].sum(dim=1) - 1
            logits = hidden[torch.arange(hidden.shape[0]), last] @ self.rows
            if not cap:
                return logits
            capped = torch.tanh(logits / cap) * cap
            return capped[:, :1] - capped[:, 1:] if capped.shape[1] == 2 else capped

    return YesNoModel().eval()
