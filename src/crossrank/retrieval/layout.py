"""On-disk layout of an index directory, and the atomic swap that publishes a new build.

::

    INDEX/
      CURRENT            name of the live generation, replaced atomically (os.replace)
      gen-000002/        the live generation: manifest.json, docs.jsonl, offsets.npy,
                         lexical/ (tantivy), vectors.usearch (when dense), deleted.npy
                         (ordinals replaced or deleted by upserts and deletes, when any)
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
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crossrank.errors import BadIndex, IndexCorrupt, IndexUnusable, InvalidInput

log = logging.getLogger(__name__)

FORMAT = "crossrank-index"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
LEXICAL_DIR = "lexical"
VECTORS_FILE = "vectors.usearch"


_GENERATION_NAME = re.compile(r"gen-[0-9]{6,}")
METRICS = ("cos", "ip")


def current_name(root: Path) -> str:
    """The generation name CURRENT holds (read once; it is replaced, never edited, by a publish)."""
    if not root.exists():
        raise IndexUnusable(f"no index at {root} (build one with `crossrank index CORPUS {root}`)")
    pointer = root / CURRENT
    if not pointer.is_file():
        raise IndexUnusable(f"{root} is not a crossrank index (no {CURRENT} file)")
    try:
        name = pointer.read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"{root}: {CURRENT} is unreadable ({exc}); the index is corrupt") from exc
    if not _GENERATION_NAME.fullmatch(name):
        raise IndexCorrupt(f"{root}: {CURRENT} does not name a generation ({name[:40]!r}); the index is corrupt")
    return name


def live_generation(root: Path) -> Path:
    """The directory of the generation CURRENT points at; :class:`BadIndex` if none.

    A publish replaces CURRENT before it deletes the old generation, so a generation found
    missing just after CURRENT named it is looked up again (the reader lost a race with a
    rebuild); it is an error only when CURRENT still names it.
    """
    for _ in range(3):
        name = current_name(root)
        generation = root / name
        if generation.is_dir():
            return generation
        if current_name(root) == name:
            break
    raise IndexCorrupt(f"{root}: {CURRENT} points at a missing generation {name!r}; the index is corrupt")


def republished(root: Path, name: str) -> bool:
    """Whether CURRENT now names another generation than ``name`` (a rebuild published meanwhile)."""
    try:
        return current_name(root) != name
    except BadIndex:
        return False


def read_manifest(generation: Path) -> dict[str, Any]:
    path = generation / MANIFEST
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorrupt(f"{generation}: {MANIFEST} is missing; the index is corrupt") from exc
    except OSError as exc:
        raise IndexCorrupt(f"{path} is unreadable ({exc.strerror or exc}); the index is corrupt") from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise IndexCorrupt(f"{path} is not valid JSON; the index is corrupt") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{path} is not a crossrank index manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise IndexUnusable(f"{path}: index format version {manifest.get('version')} is not supported")
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    def whole(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not whole(manifest.get("documents"), 0):
        raise IndexCorrupt(f"{path}: 'documents' must be a count, not {manifest.get('documents')!r}; the index is corrupt")
    if not whole(manifest.get("deleted", 0), 0) or manifest.get("deleted", 0) > manifest["documents"]:
        raise IndexCorrupt(f"{path}: 'deleted' must be a count of at most 'documents', not "
                           f"{str(manifest.get('deleted'))[:40]}; the index is corrupt")
    store = manifest.get("store", [])
    if not isinstance(store, list) or not all(isinstance(name, str) for name in store):
        raise IndexCorrupt(f"{path}: 'store' must list the stored field names, not {str(store)[:80]}; the index is corrupt")
    dense = manifest.get("dense")
    if dense is None:
        return
    if (not isinstance(dense, dict) or not isinstance(dense.get("model"), str) or not whole(dense.get("dim"), 1)
            or dense.get("metric", "cos") not in METRICS):
        raise IndexCorrupt(f"{path}: 'dense' must record the encoder's model, dim and metric ({METRICS}), "
                           f"not {str(dense)[:120]}; the index is corrupt")


def file_sizes(generation: Path) -> dict[str, int]:
    """Relative path -> size of every file of a finished generation, recorded in its manifest."""
    return {p.relative_to(generation).as_posix(): p.stat().st_size for p in sorted(generation.rglob("*"))
            if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}


def check_files(root: Path, generation: Path, manifest: dict[str, Any]) -> None:
    """:class:`BadIndex` naming the first file the manifest lists that is missing or of another size.

    Catches truncated and deleted parts before an engine reads them (some engines crash on them).
    Indexes built before the manifest listed its files are not checked.
    """
    files = manifest.get("files")
    if files is None:
        return
    if not isinstance(files, dict):
        raise IndexCorrupt(f"{root}: the manifest's 'files' is not a mapping; the index is corrupt")
    for name, size in files.items():
        path = generation / str(name)
        try:
            actual = path.stat().st_size if path.is_file() else None
        except OSError:
            actual = None
        if actual is None:
            raise IndexCorrupt(f"{root}: {generation.name}/{name} is missing; the index is corrupt or incomplete")
        if actual != size:
            raise IndexCorrupt(f"{root}: {generation.name}/{name} has {actual} bytes, not the {size} it was built "
                               "with (truncated or overwritten); the index is corrupt")


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
