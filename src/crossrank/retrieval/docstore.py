"""Stored documents of an index: one JSON line per document plus a table of byte offsets.

Documents are addressed by their ordinal (0..n-1), which is also the key of their vector
and the ``ord`` field of the lexical index. Reading a document is one seek; nothing is
loaded whole into memory (the offset table is memory-mapped).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "offsets.npy"


class DocStoreWriter:
    """Appends documents; ``close()`` writes the offset table."""

    def __init__(self, directory: Path, *, start_from: Path | None = None) -> None:
        self.path = directory / DOCS_FILE
        self._offsets: list[int] = [0]
        if start_from is not None:
            old = np.load(start_from / OFFSETS_FILE, allow_pickle=False)
            self._offsets = [int(x) for x in old]
            _copy(start_from / DOCS_FILE, self.path)
        self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._file.seek(0, 2)
        if self._file.tell() != self._offsets[-1]:
            raise OSError(f"{self.path}: size does not match its offset table")

    @property
    def count(self) -> int:
        return len(self._offsets) - 1

    def add(self, doc_id: str, text: str) -> int:
        """Store one document; returns its ordinal."""
        line = json.dumps({"id": doc_id, "text": text}, ensure_ascii=False).encode("utf-8") + b"\n"
        self._file.write(line)
        self._offsets.append(self._offsets[-1] + len(line))
        return len(self._offsets) - 2

    def close(self) -> None:
        self._file.flush()
        self._file.close()
        np.save(self.path.parent / OFFSETS_FILE, np.asarray(self._offsets, dtype=np.int64), allow_pickle=False)


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
        out: list[tuple[str, str]] = []
        for ordinal in ords:
            if not 0 <= ordinal < len(self):
                raise ValueError(f"{self._path}: no document #{ordinal} (the store holds {len(self)})")
            start, end = int(self._offsets[ordinal]), int(self._offsets[ordinal + 1])
            out.append(self._decode(os.pread(self._fd, end - start, start), ordinal))
        return out

    def _decode(self, line: bytes, ordinal: int) -> tuple[str, str]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested too deeply
            raise ValueError(f"{self._path}: document #{ordinal} is unreadable ({exc})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(
                record.get("text"), str):
            raise ValueError(f"{self._path}: document #{ordinal} is not an {{id, text}} record")
        return record["id"], record["text"]

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    def iter_ids(self) -> list[str]:
        """Every stored id, in ordinal order (used to reject duplicate ids when adding)."""
        ids: list[str] = []
        with open(self._path, "rb") as handle:
            for ordinal, line in enumerate(handle):
                ids.append(self._decode(line, ordinal)[0])
        return ids


def _copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copyfile(source, target)
