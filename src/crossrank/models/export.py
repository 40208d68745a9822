"""Export a model's weights to ONNX once, and cache the result keyed by content.

The cache key hashes the export recipe version, ``config.json`` and the weights file, so a
new revision (new weights) gets a new export and the same weights are never exported twice,
whatever directory or revision they were loaded from. Concurrent loaders serialise on a
lock file and the finished file appears atomically. The export itself runs in a child
process (:mod:`crossrank.models.child`), so the loading process never imports torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from crossrank.errors import MissingExtra, ModelError
from crossrank.models.child import describe_exit, run_child
from crossrank.models.derived import make_staging, remove_stale_staging
from crossrank.models.export_worker import error_from_record
from crossrank.models.remote_code import check_remote_code
from crossrank.models.resolve import ModelFiles

log = logging.getLogger(__name__)

#: bump when the export recipe changes so that old cached exports are not reused
EXPORT_VERSION = "1"


def default_cache_dir() -> Path:
    """``$HF_HOME/crossrank`` (``~/.cache/huggingface/crossrank`` by default)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "crossrank"


def _hash_file(digest: hashlib._Hash, path: Path) -> None:
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
    for path in sorted(files.directory.glob("*.py")):  # a custom-code model's own modelling code
        digest.update(path.name.encode())
        _hash_file(digest, path)
    for path in _module_files(files.directory):  # a sentence-transformers head is part of the model
        digest.update(str(path.relative_to(files.directory)).encode())
        _hash_file(digest, path)
    if weights.name.endswith(".index.json"):
        for shard in sorted(weights.parent.glob(weights.name.split(".")[0] + "-*")):
            _hash_file(digest, shard)
    else:
        _hash_file(digest, weights)
    return digest.hexdigest()[:24]


def _module_files(directory: Path) -> list[Path]:
    """``modules.json`` and its modules' configs and weights (not the body at the root)."""
    if not (directory / "modules.json").is_file():
        return []
    from crossrank.models.st_stack import read_modules

    found = [directory / "modules.json"]
    for entry in read_modules(directory):
        path = str(entry.get("path", ""))
        if path in ("", "."):
            continue
        for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
            if (directory / path / name).is_file():
                found.append(directory / path / name)
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_export(
    files: ModelFiles, *, task: str, cache_dir: Path | None = None, trust_remote_code: bool = False,
    external_data_bytes: int | None = None,
) -> Path:
    """Return the ONNX file for ``files``, exporting it on first use.

    ``task`` is ``"sequence-classification"`` (cross-encoders) or ``"feature-extraction"``
    (bi-encoders). The export runs in a child process (see :func:`run_export`). A model that
    declares custom code is refused unless ``trust_remote_code`` (:mod:`crossrank.models.remote_code`).
    A graph over 2 GiB (or ``external_data_bytes``) keeps its weights in ``model.onnx_data`` beside
    ``model.onnx`` (:mod:`crossrank.models.external_data`).
    """
    check_remote_code(files.name, files.directory, trust_remote_code)
    root = (cache_dir or default_cache_dir()) / "onnx"
    key = export_key(files, task)
    target = root / key / "model.onnx"
    if target.is_file():
        log.debug("using cached ONNX export %s", target)
        return target
    with _locked(root / f"{key}.lock"):
        if target.is_file():  # another process finished the export while we waited
            return target
        _remove_stale(root, key)
        log.warning("exporting %s to ONNX (once; cached at %s)", files.name, target)
        staging = make_staging(root / key)
        try:
            out = staging / "export"
            out.mkdir()
            run_export(files.directory, out / "model.onnx", task, work=staging, trust_remote_code=trust_remote_code,
                       external_data_bytes=external_data_bytes)
            target.parent.mkdir(parents=True, exist_ok=True)
            # the graph last: whoever sees model.onnx finds its external data beside it
            for item in sorted(out.iterdir(), key=lambda p: p.name == "model.onnx"):
                os.replace(item, target.parent / item.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _remove_stale(root: Path, key: str) -> None:
    """Under ``key``'s lock no other export of it runs: every staging directory of it is left over.

    Those of other keys are removed once their owner process is gone.
    """
    for entry in root.glob(f"{key}.*"):
        if entry.is_dir():  # ours by name: <key>.staging-..., or <key>.<random> from older versions
            log.info("removing %s, left by an export that did not finish", entry)
            shutil.rmtree(entry, ignore_errors=True)
    remove_stale_staging(root)


def _check_extras() -> None:
    """Fail at once, without starting a process, when the exporter's packages are absent."""
    for module in ("torch", "transformers"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # sys.modules[module] is None: blocked on purpose
            found = False
        if not found:
            raise MissingExtra(module, "export", "Exporting a model without an ONNX file to ONNX")


def run_export(
    directory: Path, out: Path, task: str, *, work: Path, trust_remote_code: bool = False,
    external_data_bytes: int | None = None,
) -> None:
    """Export in a child process, so that torch and transformers never load into this one.

    The child's errors come back as the same exceptions (``MissingExtra``, ``ModelError``);
    an unexpected failure raises ``ModelError`` with the end of the child's output. Any
    exception here (KeyboardInterrupt, or a server's SIGTERM during start-up) stops the child.
    """
    _check_extras()
    error_file = work / "error.json"
    args = [str(directory), str(out), task, "--error-file", str(error_file)]
    if trust_remote_code:
        args.append("--trust-remote-code")
    if external_data_bytes is not None:
        args += ["--external-data-bytes", str(int(external_data_bytes))]
    code, output = run_child("export", args)
    if code == 0 and out.is_file():
        return
    if output:
        log.debug("the export process said:\n%s", output)
    if error_file.is_file():
        try:
            record = json.loads(error_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict):
            raise error_from_record(record)
    raise ModelError(
        f"exporting {directory} to ONNX {describe_exit(code)}" + (f"; its output ends with:\n{output}" if output else "")
    )
