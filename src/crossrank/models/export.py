"""Export a model's weights to ONNX once, and cache the result keyed by content.

The cache key hashes the export recipe version, ``config.json`` and the weights file, so a
new revision (new weights) gets a new export and the same weights are never exported twice,
whatever directory or revision they were loaded from. Concurrent loaders serialise on a
lock file and the finished file appears atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from crossrank.errors import ModelError
from crossrank.extras import require
from crossrank.models.config import ModelConfig
from crossrank.models.resolve import ModelFiles

log = logging.getLogger(__name__)

#: bump when the export recipe changes so that old cached exports are not reused
EXPORT_VERSION = "1"
OPSET = 17


def default_cache_dir() -> Path:
    """``$HF_HOME/crossrank`` (``~/.cache/huggingface/crossrank`` by default)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "crossrank"


def _hash_file(digest: "hashlib._Hash", path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)


def export_key(files: ModelFiles, task: str) -> str:
    weights = files.weights_path
    if weights is None:
        raise ModelError(
            f"{files.directory} has neither an ONNX file (onnx/model.onnx, model.onnx) nor "
            f"weights to export (model.safetensors, pytorch_model.bin)"
        )
    digest = hashlib.sha256(f"crossrank-export-{EXPORT_VERSION}-{task}".encode())
    config = files.directory / "config.json"
    if config.is_file():
        _hash_file(digest, config)
    if weights.name.endswith(".index.json"):
        for shard in sorted(weights.parent.glob(weights.name.split(".")[0] + "-*")):
            _hash_file(digest, shard)
    else:
        _hash_file(digest, weights)
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_export(files: ModelFiles, *, task: str, cache_dir: Path | None = None) -> Path:
    """Return the ONNX file for ``files``, exporting it on first use.

    ``task`` is ``"sequence-classification"`` (cross-encoders) or ``"feature-extraction"``
    (bi-encoders).
    """
    root = (cache_dir or default_cache_dir()) / "onnx"
    key = export_key(files, task)
    target = root / key / "model.onnx"
    if target.is_file():
        log.debug("using cached ONNX export %s", target)
        return target
    with _locked(root / f"{key}.lock"):
        if target.is_file():  # another process finished the export while we waited
            return target
        log.warning("exporting %s to ONNX (once; cached at %s)", files.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=root))
        try:
            _export(files.directory, tmp / "model.onnx", task)
            target.parent.mkdir(parents=True, exist_ok=True)
            for item in tmp.iterdir():
                os.replace(item, target.parent / item.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export(directory: Path, out: Path, task: str) -> None:
    purpose = "Exporting a model without an ONNX file to ONNX"
    torch = require("torch", "export", purpose)
    transformers = require("transformers", "export", purpose)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = ModelConfig.read(directory)
    auto = (
        transformers.AutoModelForSequenceClassification
        if task == "sequence-classification"
        else transformers.AutoModel
    )
    try:
        # eager attention exports plain MatMul/Softmax nodes that ONNX Runtime can fuse
        model = auto.from_pretrained(str(directory), attn_implementation="eager").eval()
        # transformers loads a checkpoint in its stored dtype; an fp16 or bf16 checkpoint would
        # export a half-precision graph, and the exact mode is fp32 (the upcast is lossless)
        model = model.to(torch.float32)
    except Exception as exc:
        raise ModelError(f"could not load the weights in {directory} to export them: {exc}") from exc
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if config.uses_token_type_ids else [])
    sample = {name: torch.ones((2, 8), dtype=torch.long) for name in names}
    output = "logits" if task == "sequence-classification" else "last_hidden_state"
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch"} if task == "sequence-classification" else {0: "batch", 1: "sequence"}

    class _Wrapper(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: object) -> object:
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
