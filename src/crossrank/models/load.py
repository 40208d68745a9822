"""Everything a runtime needs from a model reference: ONNX file, tokenizer, config."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer

from crossrank.errors import ModelError
from crossrank.extras import require
from crossrank.models.config import ModelConfig
from crossrank.models.export import cached_export
from crossrank.models.head import Head, read_head
from crossrank.models.llm_head import template_tokenizer
from crossrank.models.remote_code import check_remote_code, from_pretrained
from crossrank.models.resolve import ModelFiles, resolve_model
from crossrank.tokenize import load_tokenizer

log = logging.getLogger(__name__)

Task = Literal["sequence-classification", "feature-extraction"]


@dataclass(frozen=True)
class LoadedModel:
    files: ModelFiles
    onnx_file: Path | None  #: None only when loaded for the torch runtime from weights alone
    config: ModelConfig
    tokenizer: Tokenizer
    head: Head | None = None  #: None for an ONNX file run as it is, and for bi-encoders
    trust_remote_code: bool = False  #: the user's opt-in to the repository's own code (torch runtime)

    @property
    def onnx_path(self) -> Path:
        if self.onnx_file is None:
            raise ModelError(f"{self.name} was loaded for the torch runtime and has no ONNX file")
        return self.onnx_file

    @property
    def name(self) -> str:
        return self.files.name


_SLOW_TOKENIZER_FILES = ("vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json")


def _tokenizer(directory: Path, trust_remote_code: bool) -> Tokenizer:
    """``tokenizer.json``, or a conversion of the slow tokenizer's vocabulary files."""
    if (directory / "tokenizer.json").is_file() or not any(
        (directory / name).is_file() for name in _SLOW_TOKENIZER_FILES
    ):
        return load_tokenizer(directory)  # raises a clear error when there is none
    transformers = require(
        "transformers", "export", f"Converting the slow tokenizer in {directory} (no tokenizer.json)"
    )
    try:
        fast = from_pretrained(transformers.AutoTokenizer, directory, trust_remote_code, use_fast=True)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not load a tokenizer from {directory}: {exc}") from exc
    return Tokenizer.from_str(fast.backend_tokenizer.to_str())


def check_score_output(name: str, output: str, shape: Sequence[int | str | None]) -> None:
    """Refuse a graph whose output is not one or two logits per pair, before anything is scored.

    ``shape`` is the output's declared shape (a runtime's session metadata; nothing is run). A
    repository's ONNX file that outputs ``last_hidden_state`` ``[batch, sequence, hidden]`` or a
    ``sentence_embedding`` ``[batch, hidden]`` is a bi-encoder's (or a bare encoder's) graph.
    """
    rank = len(shape)
    last = shape[-1] if shape else None
    if rank == 1 or (rank == 2 and (not isinstance(last, int) or last in (1, 2))):
        return
    described = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    kind = "token embeddings" if rank == 3 else "embeddings" if rank == 2 else "not scores"
    raise ModelError(
        f"{name}'s ONNX graph outputs {output!r} of shape {described} ({kind}): a bi-encoder or a bare encoder, "
        f"not a reranker, which outputs one or two logits per (query, document) pair. Embed with it through "
        f"crossrank.Encoder (or 'type: bi-encoder' in a server config), or rerank with a cross-encoder such as "
        f"cross-encoder/ms-marco-MiniLM-L6-v2."
    )


def load_model(
    model: str | Path,
    *,
    task: Task,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    weights: bool = False,
    template: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Resolve, download and (if the model has no ONNX file) export ``model``.

    With ``weights=True`` (the torch runtime) the Hugging Face weights are fetched instead
    and nothing is exported. A cross-encoder that would run from its weights must declare a
    trained classifier (see :mod:`crossrank.models.head`); an ONNX file in the repository is
    run as it is. ``template`` names an LLM reranker's prompt-template family (else the
    catalogue's, if any; see :mod:`crossrank.models.llm_head`). A model whose files declare
    custom code (``auto_map``) is refused unless
    ``trust_remote_code`` (see :mod:`crossrank.models.remote_code`), except where its ONNX file
    is run: no code from the repository runs then.
    """
    files = resolve_model(model, revision=revision, cache_dir=cache_dir, weights=weights)
    if files.onnx_path is None or weights:  # transformers will load it: its code would run
        check_remote_code(files.name, files.directory, trust_remote_code)
    config = ModelConfig.read(files.directory, default_max_length=files.spec.max_length if files.spec else None)
    onnx_path = files.onnx_path
    head = None
    export_task: str = task
    if task == "sequence-classification" and (onnx_path is None or weights):
        family = template or (files.spec.template if files.spec else None)
        head = read_head(files.name, files.directory, files.weights_path, family)
        if head.kind != "sequence-classification":
            export_task = head.export_task
    elif template is not None:
        raise ModelError(f"template={template!r} applies to an LLM reranker run from its weights; {files.name} ships "
                         f"an ONNX file ({onnx_path}) that is run as it is. Drop the template option for it.")
    if onnx_path is None and not weights:
        onnx_path = cached_export(
            files, task=export_task, cache_dir=Path(cache_dir) if cache_dir else None,
            trust_remote_code=trust_remote_code,
        )
    tokenizer = _tokenizer(files.directory, trust_remote_code)
    if head is not None and head.template is not None:  # the prompt template around every pair
        tokenizer = template_tokenizer(tokenizer, head.template)
    return LoadedModel(files, onnx_path, config, tokenizer, head, trust_remote_code)
