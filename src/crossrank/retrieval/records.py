"""Stream documents out of a corpus file: JSONL, BEIR ``corpus.jsonl`` or plain text.

Reading is one line at a time, so a corpus of any size needs constant memory. Records
without a usable id or text are skipped and counted by reason; a line that is not valid
JSON is reported with its line number and either skipped or fatal (``on_error``). Bytes
that are not UTF-8, and surrogates escaped in JSON (see ``crossrank.texts``), become
U+FFFD.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from crossrank.errors import InvalidInput
from crossrank.texts import replace_surrogates

log = logging.getLogger(__name__)

CorpusFormat = Literal["auto", "jsonl", "beir", "text"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "beir", "text")
OnError = Literal["skip", "stop"]
MAX_REPORTED_LINES = 20


@dataclass(frozen=True)
class Record:
    id: str
    text: str


@dataclass
class ReadStats:
    """What reading a corpus found: lines read, records kept, records skipped by reason."""

    lines: int = 0
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bad_lines: list[int] = field(default_factory=list)  #: first malformed line numbers

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        if reason == "malformed JSON" and len(self.bad_lines) < MAX_REPORTED_LINES:
            self.bad_lines.append(line)


def detect_format(path: Path) -> str:
    """``beir`` for a file named corpus.jsonl, ``jsonl`` for .jsonl/.json/.ndjson, else ``text``."""
    if path.name == "corpus.jsonl":
        return "beir"
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    return "text"


def read_records(
    path: str | Path,
    *,
    format: CorpusFormat = "auto",
    id_field: str | None = None,
    text_fields: Sequence[str] | None = None,
    on_error: OnError = "skip",
    stats: ReadStats | None = None,
) -> Iterator[Record]:
    """Yield the documents of a corpus file, one at a time.

    ``id_field``/``text_fields`` name the JSON fields (defaults: ``id``/``text`` for JSONL,
    ``_id``/``title,text`` for BEIR). Several text fields are joined with a newline; a
    record where none of them holds text is skipped. Plain text gives one document per
    non-empty line with its line number as id. Counts go to ``stats``.
    """
    source = Path(path)
    if not source.is_file():
        raise InvalidInput(f"corpus file not found: {source}")
    if on_error not in ("skip", "stop"):
        raise InvalidInput("on_error must be 'skip' or 'stop'")
    kind = detect_format(source) if format == "auto" else format
    if kind not in FORMATS:
        raise InvalidInput(f"format must be one of {FORMATS}")
    counts = stats if stats is not None else ReadStats()
    if kind == "text":
        yield from _read_text(source, counts)
        return
    default_id, default_text = ("_id", ("title", "text")) if kind == "beir" else ("id", ("text",))
    yield from _read_jsonl(
        source, id_field or default_id, tuple(text_fields or default_text), on_error, counts
    )


def _read_text(source: Path, stats: ReadStats) -> Iterator[Record]:
    with open(source, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            stats.lines = number
            text = line.strip()
            if not text:
                stats.skip("empty line", number)
                continue
            stats.records += 1
            yield Record(str(number), text)


def _read_jsonl(
    source: Path, id_field: str, text_fields: tuple[str, ...], on_error: OnError, stats: ReadStats
) -> Iterator[Record]:
    with open(source, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            stats.lines = number
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                if on_error == "stop":
                    raise InvalidInput(f"{source}: line {number}: malformed JSON ({exc})") from exc
                log.warning("%s: line %d: malformed JSON, skipped (%s)", source, number, exc)
                stats.skip("malformed JSON", number)
                continue
            if not isinstance(obj, dict):
                stats.skip("not a JSON object", number)
                continue
            raw_id = obj.get(id_field)
            if raw_id is None or isinstance(raw_id, (dict, list)) or str(raw_id) == "":
                stats.skip(f"no '{id_field}'", number)
                continue
            parts = [obj[f].strip() for f in text_fields if isinstance(obj.get(f), str) and obj[f].strip()]
            if not parts:
                stats.skip(f"no text in {'/'.join(text_fields)}", number)
                continue
            stats.records += 1
            # undecodable bytes became U+FFFD above; a surrogate escaped in the JSON does too
            yield Record(replace_surrogates(str(raw_id)), replace_surrogates("\n".join(parts)))
