"""The torch side of the ONNX export, run in a child process (see :mod:`crossrank.models.child`).

Exporting imports torch and transformers (several hundred MB that Python never gives
back), so :func:`crossrank.models.export.cached_export` runs this in a process of its own
and the serving process never holds them. A :class:`~crossrank.errors.CrossrankError` is
written as JSON to the error file so the parent raises the same error; anything else goes
to the child's output (captured by the parent and shown on failure).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from crossrank.errors import CrossrankError, MissingExtra, ModelError
from crossrank.extras import require
from crossrank.models.config import ModelConfig
from crossrank.models.external_data import THRESHOLD, consolidate
from crossrank.models.head import refuse_fresh_weights
from crossrank.models.remote_code import from_pretrained

log = logging.getLogger(__name__)

OPSET = 17


def export_onnx(
    directory: Path, out: Path, task: str, *, trust_remote_code: bool = False, external_data_bytes: int = THRESHOLD
) -> None:
    """Write ``out`` (model.onnx) from the Hugging Face weights in ``directory``.

    A graph over ``external_data_bytes`` (protobuf's 2 GiB limit, less headroom) keeps its weights
    in ``model.onnx_data`` beside it (:func:`crossrank.models.external_data.consolidate`).

    ``trust_remote_code`` lets transformers run the repository's own modelling code (see
    :mod:`crossrank.models.remote_code`); without it a model that declares such code is refused.
    """
    purpose = "Exporting a model without an ONNX file to ONNX"
    torch = require("torch", "export", purpose)
    transformers = require("transformers", "export", purpose)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = ModelConfig.read(directory)
    classify = task in ("sequence-classification", "st-modules")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if config.uses_token_type_ids else [])
    stacked = task == "st-modules" or task.startswith("llm-yes-no:")
    classify = classify or stacked
    if task == "st-modules":  # a sentence-transformers module stack: body and head in one graph
        from crossrank.models.st_torch import build_stack_model

        model = build_stack_model(directory, names, trust_remote_code=trust_remote_code)
    elif task.startswith("llm-yes-no:"):  # the last token's hidden state times one head row
        from crossrank.models.llm_torch import build_yes_no_model

        _, yes, no = task.split(":")
        model = build_yes_no_model(
            directory, names, int(yes), None if int(no) < 0 else int(no), trust_remote_code=trust_remote_code
        )
    else:
        model = _load_transformers(torch, transformers, directory, classify, trust_remote_code)
    sample = {name: torch.ones((2, 8), dtype=torch.long) for name in names}
    output = "logits" if classify else "last_hidden_state"
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch"} if classify else {0: "batch", 1: "sequence"}

    class _Wrapper(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # noqa: F821 - bound above in every branch; ruff misreads the class scope

        def forward(self, *args: object) -> object:
            if stacked:
                return self.model(*args)
            result = self.model(**dict(zip(names, args)))
            return result[0]

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python code
        torch.onnx.export(
            _Wrapper(),
            tuple(sample[n] for n in names),
            str(out),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    del model  # the weights are on disk now: free them before the tensors are gathered into one file
    consolidate(out, threshold=external_data_bytes)


def _load_transformers(torch: Any, transformers: Any, directory: Path, classify: bool, trust_remote_code: bool) -> Any:
    auto = transformers.AutoModelForSequenceClassification if classify else transformers.AutoModel
    try:
        # eager attention exports plain MatMul/Softmax nodes that ONNX Runtime can fuse
        model, info = from_pretrained(
            auto, directory, trust_remote_code, attn_implementation="eager", output_loading_info=True
        )
        # transformers loads a checkpoint in its stored dtype; an fp16 or bf16 checkpoint would
        # export a half-precision graph, and the exact mode is fp32 (the upcast is lossless)
        model = model.to(torch.float32).eval()
    except CrossrankError:
        raise
    except Exception as exc:
        raise ModelError(f"could not load the weights in {directory} to export them: {exc}") from exc
    if classify:  # a freshly initialised head would export random scores
        refuse_fresh_weights(str(directory), info.get("missing_keys", ()), info.get("mismatched_keys", ()))
    return model


def error_record(exc: CrossrankError) -> dict[str, str]:
    """A JSON-able description of ``exc`` that :func:`error_from_record` turns back into it."""
    if isinstance(exc, MissingExtra):
        return {"type": "MissingExtra", "module": exc.module, "extra": exc.extra, "message": str(exc)}
    return {"type": type(exc).__name__, "message": str(exc)}


def error_from_record(record: dict[str, str]) -> CrossrankError:
    if record.get("type") == "MissingExtra":
        error = MissingExtra(record["module"], record["extra"], "")
        error.args = (record["message"],)  # the child's full message, purpose included
        error.msg = record["message"]  # what ImportError's str() shows
        return error
    return ModelError(record.get("message", "the ONNX export failed"))


def run_export_command(
    directory: Path, out: Path, task: str, error_file: Path, *, trust_remote_code: bool = False,
    external_data_bytes: int = THRESHOLD,
) -> int:
    """The child's side of an export: 0 when ``out`` is written, 3 with ``error_file`` for a crossrank error."""
    try:
        export_onnx(directory, out, task, trust_remote_code=trust_remote_code, external_data_bytes=external_data_bytes)
    except CrossrankError as exc:
        error_file.write_text(json.dumps(error_record(exc)), encoding="utf-8")
        return 3
    return 0
