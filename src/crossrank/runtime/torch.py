"""PyTorch runtime: the model's own ``transformers`` code, on a CUDA GPU or on the CPU.

This is the GPU path: fp16 on CUDA for the fast mode, fp32 for the exact mode. On the CPU
it runs fp32, or bf16 in the fast mode. It needs the Hugging Face weights (not the ONNX
file) and the optional packages ``torch`` and ``transformers``:
``pip install 'crossrank[torch]'`` (with a CUDA build of torch for the GPU).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crossrank.errors import ModelError
from crossrank.extras import require
from crossrank.models.head import Head, refuse_fresh_weights
from crossrank.models.remote_code import from_pretrained
from crossrank.runtime.base import check_max_batch_tokens
from crossrank.tokenize import plan_batches

log = logging.getLogger(__name__)

Precision = Literal["f32", "f16", "bf16"]
#: the default ``max_batch_tokens`` on a GPU (rows x padded length): large enough to fill the card, small
#: enough that the attention scores of one batch stay far below its memory
GPU_BATCH_TOKENS = 65_536


@lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA GPU (imports torch only if installed)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


class TorchRuntime:
    """A ``transformers`` sequence-classification model, a sentence-transformers module stack
    (``head`` of kind ``st-modules``) or an LLM yes/no reranker's body and head row (``llm-yes-no``);
    ``run`` is safe from several threads.

    ``max_batch_tokens`` bounds the tokens of one call, padding counted (default: none on the
    CPU, :data:`GPU_BATCH_TOKENS` on a GPU, where the row cap is lifted to fill the card)."""

    name = "torch"
    output = "logits"
    output_shape = None  #: no graph to read it from; the weights' head is checked on load

    def __init__(
        self,
        directory: Path,
        *,
        device: str = "cpu",
        precision: Precision = "f32",
        threads: int | None = None,
        head: Head | None = None,
        trust_remote_code: bool = False,
        max_batch_tokens: int | None = None,
    ) -> None:
        max_batch_tokens = check_max_batch_tokens(max_batch_tokens)
        #: most tokens per call, padding counted (None: no bound)
        self.max_batch_tokens: int | None = max_batch_tokens or (None if device == "cpu" else GPU_BATCH_TOKENS)
        torch = require("torch", "torch", "The torch runtime (GPU path)")
        transformers = require("transformers", "torch", "The torch runtime (GPU path)")
        self.torch = torch
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} was asked for, but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); drop providers=['cuda'] to run on the CPU"
            )
        if threads and device == "cpu":
            torch.set_num_threads(int(threads))  # process-wide: torch has one CPU thread pool
        dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.stack = head is not None and head.kind in ("st-modules", "llm-yes-no")
        if head is not None and head.kind == "llm-yes-no":  # the module the export traces: one head row
            from crossrank.models.llm_torch import build_yes_no_model

            if head.yes_id is None:
                raise ModelError(f"{directory}: an LLM yes/no head without its scored token id")
            self.input_names = ["input_ids", "attention_mask"]
            self.model = build_yes_no_model(directory, self.input_names, head.yes_id, head.no_id,
                                            trust_remote_code=trust_remote_code, attention=None).to(
                device=device, dtype=dtype)
        elif self.stack:  # a sentence-transformers module stack: the same module the export traces
            from crossrank.models.config import ModelConfig
            from crossrank.models.st_torch import build_stack_model

            token_types = ["token_type_ids"] if ModelConfig.read(directory).uses_token_type_ids else []
            self.input_names = ["input_ids", "attention_mask", *token_types]
            self.model = build_stack_model(directory, self.input_names, trust_remote_code=trust_remote_code).to(
                device=device, dtype=dtype
            )
        if self.stack:
            self.device = device
            self.precision = precision
            self.path = directory
            self.providers = [f"torch {device} ({precision})"]
            return
        try:
            model, info = from_pretrained(
                transformers.AutoModelForSequenceClassification, directory, trust_remote_code, output_loading_info=True
            )
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"transformers could not load the weights in {directory}: {str(exc).strip()[:300]}"
            ) from exc
        refuse_fresh_weights(str(directory), info.get("missing_keys", ()), info.get("mismatched_keys", ()))
        self.model = model.to(device=device, dtype=dtype).eval()
        accepted = inspect.signature(self.model.forward).parameters
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
        self.device = device
        self.precision = precision
        self.path = directory
        self.providers = [f"torch {device} ({precision})"]

    def plan(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        if self.device == "cpu":
            return plan_batches(lengths, batch_size, self.max_batch_tokens)
        # a GPU wants few large batches: the row cap is lifted, the token budget bounds memory
        return plan_batches(lengths, max(batch_size, 1024), self.max_batch_tokens)

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            inputs: dict[str, Any] = {
                name: torch.from_numpy(np.ascontiguousarray(feed[name], dtype=np.int64)).to(self.device)
                for name in self.input_names
                if name in feed
            }
            if self.stack:
                logits = self.model(*(inputs[name] for name in self.input_names))
            else:
                logits = self.model(**inputs).logits
            return np.asarray(logits.float().cpu().numpy())
