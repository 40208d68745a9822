"""Stored documents of an index: one JSON line per document plus a table of byte offsets.

Documents are addressed by their ordinal (0..n-1), which is also the key of their vector
and the ``ord`` field of the lexical index. Reading a document is one seek; nothing is
loaded whole into memory (the offset table is memory-mapped). A document carries its stored
fields (``"fields"``) when the index keeps any. Ordinals are never reused: a deleted or
replaced document stays in the file and its ordinal is listed in ``deleted.npy``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from crossrank.texts import replace_surrogates

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "offsets.npy"
DELETED_FILE = "deleted.npy"


class DocStoreWriter:
    """Appends documents; ``close()`` writes the offset table."""

    def __init__(self, directory: Path, *, start_from: Path | None = None) -> None:
        self.path = directory / DOCS_FILE
        self._offsets: list[int] = [0]
        self.deleted: set[int] = set()
        if start_from is not None:
            old = np.load(start_from / OFFSETS_FILE, allow_pickle=False)
            self._offsets = [int(x) for x in old]
            self.deleted = {int(x) for x in read_deleted(start_from)}
            _copy(start_from / DOCS_FILE, self.path)
        self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._file.seek(0, 2)
        if self._file.tell() != self._offsets[-1]:
            raise OSError(f"{self.path}: size does not match its offset table")

    @property
    def count(self) -> int:
        """Ordinals handed out (deleted ones included)."""
        return len(self._offsets) - 1

    @property
    def live(self) -> int:
        return self.count - len(self.deleted)

    def add(self, doc_id: str, text: str, fields: dict[str, Any] | None = None) -> int:
        """Store one document; returns its ordinal."""
        record: dict[str, Any] = {"id": doc_id, "text": text}
        if fields:
            record["fields"] = fields
        # a lone surrogate in a stored field (JSON allows it) becomes U+FFFD, so the line is UTF-8
        line = replace_surrogates(json.dumps(record, ensure_ascii=False)).encode("utf-8") + b"\n"
        self._file.write(line)
        self._offsets.append(self._offsets[-1] + len(line))
        return len(self._offsets) - 2

    def delete(self, ordinal: int) -> None:
        self.deleted.add(ordinal)

    def close(self) -> None:
        self._file.flush()
        self._file.close()
        np.save(self.path.parent / OFFSETS_FILE, np.asarray(self._offsets, dtype=np.int64), allow_pickle=False)
        if self.deleted:
            np.save(self.path.parent / DELETED_FILE, np.asarray(sorted(self.deleted), dtype=np.int64),
                    allow_pickle=False)


def read_deleted(directory: Path) -> np.ndarray:
    """The deleted ordinals of a generation (none when it has no ``deleted.npy``)."""
    path = directory / DELETED_FILE
    if not path.is_file():
        return np.zeros(0, dtype=np.int64)
    try:
        deleted = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a table of deleted documents ({exc})") from exc
    if not isinstance(deleted, np.ndarray) or deleted.ndim != 1 or not np.issubdtype(deleted.dtype, np.integer):
        raise ValueError(f"{path} is not a one-dimensional table of ordinals")
    return deleted


class DocStore:
    """Random access to stored documents by ordinal.

    The file is opened once and read with ``os.pread`` (thread-safe, no shared offset), so
    a reader keeps working after a newer build has replaced and deleted its generation.
    """

    def __init__(self, directory: Path) -> None:
        """Open the store; ``OSError`` or ``ValueError`` (with the file named) when it is unusable."""
        self._fd = -1
        self._path = directory / DOCS_FILE
        offsets_path = directory / OFFSETS_FILE
        try:
            self._offsets = np.load(offsets_path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError) as exc:  # empty, truncated, not .npy, or pickled objects
            raise ValueError(f"{offsets_path} is not an offset table ({exc})") from exc
        offsets = self._offsets
        if (not isinstance(offsets, np.ndarray) or offsets.ndim != 1 or len(offsets) < 1
                or not np.issubdtype(offsets.dtype, np.integer)):
            raise ValueError(f"{offsets_path} is not a one-dimensional table of integer offsets")
        if int(offsets[0]) != 0 or bool(np.any(np.diff(offsets) < 0)):
            raise ValueError(f"{offsets_path}: offsets do not start at 0 and grow")
        self._fd = os.open(self._path, os.O_RDONLY)
        size = os.fstat(self._fd).st_size
        if int(offsets[-1]) != size:
            self.close()
            raise ValueError(f"{self._path} does not match its offset table")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, ords: list[int]) -> list[tuple[str, str]]:
        """(id, text) of each ordinal, in the order given."""
        return [(doc_id, text) for doc_id, text, _ in self.get_documents(ords)]

    def get_documents(self, ords: list[int]) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, text, stored fields) of each ordinal, in the order given."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        for ordinal in ords:
            if not 0 <= ordinal < len(self):
                raise ValueError(f"{self._path}: no document #{ordinal} (the store holds {len(self)})")
            start, end = int(self._offsets[ordinal]), int(self._offsets[ordinal + 1])
            out.append(self._decode_all(os.pread(self._fd, end - start, start), ordinal))
        return out

    def _decode(self, line: bytes, ordinal: int) -> tuple[str, str]:
        doc_id, text, _ = self._decode_all(line, ordinal)
        return doc_id, text

    def _decode_all(self, line: bytes, ordinal: int) -> tuple[str, str, dict[str, Any]]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested too deeply
            raise ValueError(f"{self._path}: document #{ordinal} is unreadable ({exc})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(
                record.get("text"), str):
            raise ValueError(f"{self._path}: document #{ordinal} is not an {{id, text}} record")
        fields = record.get("fields", {})
        if not isinstance(fields, dict):
            raise ValueError(f"{self._path}: document #{ordinal} has stored fields that are not an object")
        return record["id"], record["text"], fields

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    def iter_ids(self) -> list[str]:
        """Every stored id, in ordinal order, deleted ones included (see :func:`read_deleted`)."""
        ids: list[str] = []
        with open(self._path, "rb") as handle:
            for ordinal, line in enumerate(handle):
                ids.append(self._decode(line, ordinal)[0])
        return ids


def _copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copyfile(source, target)
