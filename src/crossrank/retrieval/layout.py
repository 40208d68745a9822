"""On-disk layout of an index directory, and the atomic swap that publishes a new build.

::

    INDEX/
      CURRENT            name of the live generation, replaced atomically (os.replace)
      gen-000002/        the live generation: manifest.json, docs.jsonl, offsets.npy,
                         lexical/ (tantivy), vectors.usearch (when dense)
      .build-*/          a build in progress (removed by the next build if it crashed)
      .lock              held by the one writer allowed at a time

A build writes a complete new generation next to the live one and only then points
CURRENT at it, so a crash or Ctrl-C at any moment leaves the previous index answering.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidInput

log = logging.getLogger(__name__)

FORMAT = "crossrank-index"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
LEXICAL_DIR = "lexical"
VECTORS_FILE = "vectors.usearch"


class BadIndex(InvalidInput):
    """The index directory is missing, incomplete, corrupt or incompatible."""

    kind = "bad_index"


def live_generation(root: Path) -> Path:
    """The directory of the generation CURRENT points at; :class:`BadIndex` if none."""
    if not root.exists():
        raise BadIndex(f"no index at {root} (build one with `crossrank index CORPUS {root}`)")
    pointer = root / CURRENT
    if not pointer.is_file():
        raise BadIndex(f"{root} is not a crossrank index (no {CURRENT} file)")
    name = pointer.read_text(encoding="utf-8").strip()
    generation = root / name
    if not name.startswith("gen-") or not generation.is_dir():
        raise BadIndex(f"{root}: {CURRENT} points at a missing generation {name!r}; the index is corrupt")
    return generation


def read_manifest(generation: Path) -> dict[str, Any]:
    path = generation / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadIndex(f"{generation}: {MANIFEST} is missing; the index is corrupt") from exc
    except ValueError as exc:
        raise BadIndex(f"{path} is not valid JSON; the index is corrupt") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadIndex(f"{path} is not a crossrank index manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise BadIndex(f"{path}: index format version {manifest.get('version')} is not supported")
    return manifest


def write_manifest(generation: Path, manifest: dict[str, Any]) -> None:
    body = {"format": FORMAT, "version": FORMAT_VERSION, **manifest}
    (generation / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True), encoding="utf-8")


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Exclusive lock so that two builds never race on one index."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"{root} exists and is not a directory; an index is a directory") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create the index directory {root}: {exc.strerror}") from None
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise InvalidInput(f"{root} is being written by another process") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_build_dir(root: Path) -> Path:
    """A fresh temporary directory inside the index, after removing crashed builds."""
    for stale in root.glob(".build-*"):
        log.info("removing an unfinished build %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    os.chmod(build, 0o755)  # mkdtemp makes it private; the published generation is read by servers too
    return build


def publish(root: Path, build: Path) -> Path:
    """Rename the finished build to the next generation and point CURRENT at it atomically."""
    numbers = [int(p.name[4:]) for p in root.glob("gen-*") if p.name[4:].isdigit()]
    generation = root / f"gen-{max(numbers, default=0) + 1:06d}"
    _fsync_tree(build)
    os.rename(build, generation)
    tmp = root / f".{CURRENT}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(generation.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / CURRENT)
    _fsync_dir(root)
    for old in root.glob("gen-*"):
        if old != generation:
            shutil.rmtree(old, ignore_errors=True)
    return generation


def link_or_copy_tree(source: Path, target: Path) -> None:
    """Hard-link an immutable-file tree (tantivy segments), copying where links fail."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name.startswith(".tantivy-") and item.name.endswith(".lock"):
            continue
        if item.is_dir():
            link_or_copy_tree(item, target / item.name)
            continue
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copy2(item, target / item.name)


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def directory_size(path: Path) -> int:
    """Bytes on disk under ``path`` (files only)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
