"""Turn a model reference (hub id, alias, local directory, ``file://`` URL) into local files.

Hub downloads go through ``huggingface_hub`` (its cache, ``HF_HOME`` and ``HF_ENDPOINT`` are
respected; ``revision`` pins a branch, tag or commit). When the repository has an ONNX file
only that file and the small configuration files are fetched; otherwise the weights are
fetched and exported to ONNX once (see :mod:`crossrank.models.export`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from crossrank.errors import HubUnavailable, ModelError, ModelNotFound
from crossrank.models.catalogue import ModelSpec, find_spec

log = logging.getLogger(__name__)

ONNX_CANDIDATES = ("onnx/model.onnx", "model.onnx")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: what the torch side reads: one weights file, or the shards of a large model and their index
WEIGHT_PATTERNS = [
    *WEIGHT_FILES,
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model-*-of-*.bin",
    "*.py",  # a custom-code model's modelling code: run only with trust_remote_code (remote_code.py)
]
METADATA_PATTERNS = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    # a sentence-transformers CrossEncoder's head modules (2_Dense/, 3_LayerNorm/, ...)
    "[0-9]*_*/config.json",
    "[0-9]*_*/model.safetensors",
    "[0-9]*_*/pytorch_model.bin",
]


@dataclass(frozen=True)
class ModelFiles:
    """A model on local disk, in the Hugging Face hub layout."""

    name: str
    directory: Path
    onnx_path: Path | None
    spec: ModelSpec | None
    revision: str | None = None

    @property
    def weights_path(self) -> Path | None:
        for name in (*WEIGHT_FILES, "model.safetensors.index.json", "pytorch_model.bin.index.json"):
            if (self.directory / name).is_file():
                return self.directory / name
        return None


def _onnx_names(spec: ModelSpec | None) -> tuple[str, ...]:
    """The ONNX files to look for: the catalogue's, none where it says the model is exported, else the usual ones."""
    if spec is None:
        return ONNX_CANDIDATES
    return (spec.model_file,) if spec.model_file else ()


def external_data_names(onnx_names: tuple[str, ...]) -> list[str]:
    """The external-data files an ONNX file over 2 GB keeps beside it (``model.onnx_data``, ``model.onnx.data``)."""
    return [f"{name}{suffix}" for name in onnx_names for suffix in ("_data", ".data")]


def _find_onnx(directory: Path, spec: ModelSpec | None) -> Path | None:
    names = _onnx_names(spec)
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def _local_directory(model: str) -> Path | None:
    """A path-like reference resolved to a directory; ``ModelNotFound`` if it names none."""
    text = model[len("file://") :] if model.startswith("file://") else model
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    looks_like_path = model.startswith(("file://", "/", "./", "../", "~")) or text.count("/") > 1
    if looks_like_path:
        raise ModelNotFound(f"model directory {text!r} does not exist")
    return None


def _hub_error(repo_id: str, exc: Exception) -> ModelError:
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)):
        return ModelNotFound(
            f"{repo_id!r} is not a model on the Hugging Face hub (or it is gated/private: log in "
            f"with `hf auth login`). For a model on disk, pass its directory path."
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFound(f"revision not found for {repo_id!r}: {exc}")
    return HubUnavailable(
        f"could not download {repo_id!r} from the Hugging Face hub and it is not in the local "
        f"cache ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        f"Check the network (or HF_ENDPOINT / proxy settings), or download the model on a machine "
        f"with access (`hf download {repo_id} --local-dir DIR`) and pass --model DIR "
        f"(or Reranker('DIR')) to load it from disk."
    )


def _download(repo_id: str, revision: str | None, cache_dir: Path | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns
        )
    except Exception as exc:  # huggingface_hub raises many types; classify them for the user
        raise _hub_error(repo_id, exc) from exc
    return Path(path)


def resolve_model(
    model: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    weights: bool = False,
) -> ModelFiles:
    """Locate (downloading if needed) the files of ``model``.

    ``model`` is a local directory, a ``file://`` URL, a catalogue name or alias, or any
    hub repository id. ``weights=True`` (the torch runtime) fetches the Hugging Face weights
    instead of the ONNX file.
    """
    if isinstance(model, Path):
        model = str(model)
    if not isinstance(model, str) or not model.strip():
        raise ModelNotFound("model must be a non-empty hub id or directory path")
    local = _local_directory(model)
    if local is not None:
        files = ModelFiles(model, local, _find_onnx(local, None), None)
        if weights and files.weights_path is None:
            raise ModelError(
                f"{local} has no model weights ({' or '.join(WEIGHT_FILES)}); the torch runtime runs the "
                f"weights, not the ONNX file. Use runtime='onnxruntime' for this model."
            )
        return files
    spec = find_spec(model)
    repo_id = spec.sources[0] if spec else model
    cache = Path(cache_dir) if cache_dir is not None else None
    onnx_names = _onnx_names(spec)
    log.info("fetching %s (revision %s) from the Hugging Face hub", repo_id, revision or "main")
    if weights:
        directory = _download(repo_id, revision, cache, METADATA_PATTERNS + WEIGHT_PATTERNS)
        files = ModelFiles(spec.name if spec else repo_id, directory, _find_onnx(directory, spec), spec, revision)
        if files.weights_path is None:
            raise ModelError(f"{repo_id!r} has no {' or '.join(WEIGHT_FILES)} for the torch runtime")
        return files
    directory = _download(repo_id, revision, cache, METADATA_PATTERNS + [*onnx_names, *external_data_names(onnx_names)])
    onnx_path = _find_onnx(directory, spec)
    if onnx_path is None:
        log.info("%s has no ONNX file; fetching the weights to export one", repo_id)
        directory = _download(repo_id, revision, cache, METADATA_PATTERNS + WEIGHT_PATTERNS)
    return ModelFiles(spec.name if spec else repo_id, directory, onnx_path, spec, revision)

