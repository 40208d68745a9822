"""Open a corpus file for reading, line by line: plain or compressed, and watched for changes.

Compression is recognised by the file's first bytes, not its name: gzip, bzip2 and xz with
the standard library, zstd when the ``zstandard`` package is installed (otherwise refused
with a message saying so). The file's identity (device, inode, size, modification time) is
taken when it is opened and checked again at its end: a corpus rewritten or appended to
while it is read fails with :class:`CorpusChanged` instead of yielding a part of it.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from crossrank.errors import CorpusChanged, InvalidInput

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd")


def compression_of(path: Path) -> str | None:
    """``gzip``, ``bzip2``, ``xz``, ``zstd`` or ``None`` (not compressed), from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def logical_name(path: Path) -> str:
    """The file name without a compression suffix: ``corpus.jsonl.gz`` -> ``corpus.jsonl``."""
    name = path.name
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _decompressed(raw: IO[bytes], compression: str | None, path: Path) -> Any:
    if compression is None:
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    try:
        import zstandard
    except ImportError:
        raise InvalidInput(f"{path} is zstd-compressed and the 'zstandard' package is missing: "
                           "pip install 'crossrank[index]' (or decompress it first: zstd -d)") from None
    reader: Any = zstandard.ZstdDecompressor().stream_reader(raw)
    return io.BufferedReader(reader)


@contextlib.contextmanager
def corpus_lines(path: Path) -> Iterator[Iterator[tuple[int, str]]]:
    """(line number, line) of a corpus file, decompressed and decoded (bad UTF-8 becomes U+FFFD).

    Raises :class:`InvalidInput` for a damaged compressed stream and :class:`CorpusChanged`
    when the file changes before its end is reached.
    """
    compression = compression_of(path)
    raw = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        before = _identity(os.fstat(raw.fileno()))
        stream = _decompressed(raw, compression, path)
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=None)  # a BOM is dropped
        yield _read(text, raw, before, path, compression)
    finally:
        raw.close()


def _damage_errors() -> tuple[type[Exception], ...]:
    """What the decompressors raise for a damaged or cut stream."""
    errors: tuple[type[Exception], ...] = (OSError, EOFError, lzma.LZMAError, ValueError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def _read(text: IO[str], raw: IO[bytes], before: tuple[int, ...], path: Path,
          compression: str | None) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(text, start=1):
            yield number, line
    except _damage_errors() as exc:  # a damaged or cut compressed stream
        if isinstance(exc, ValueError) and raw.closed:
            raise
        raise InvalidInput(f"{path}: the {compression or 'file'} stream is damaged after line {number} "
                           f"({exc}); nothing was indexed") from exc
    check_unchanged(path, raw, before)


def check_unchanged(path: Path, raw: IO[bytes], before: tuple[int, ...]) -> None:
    """:class:`CorpusChanged` unless ``path`` is still the file opened, untouched since."""
    try:
        now_path = _identity(os.stat(path))
    except OSError:
        now_path = None
    now_handle = _identity(os.fstat(raw.fileno()))
    if now_handle != before or now_path != before:
        raise CorpusChanged(f"{path} changed while it was being read (modified, replaced or appended to); "
                            "nothing was indexed from it. Index a file that is not being written")
