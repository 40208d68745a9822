"""Stream documents out of a corpus file: JSONL, BEIR ``corpus.jsonl`` or plain text.

Reading is one line at a time, so a corpus of any size needs constant memory (compressed
files too, see :mod:`crossrank.retrieval.source`). Records
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
from typing import Any, Literal

from crossrank.errors import InvalidInput
from crossrank.retrieval.fields import stored_fields
from crossrank.retrieval.source import corpus_lines, logical_name
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
    #: the stored fields (``--store``): path -> value as in the corpus; returned with every hit
    fields: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class ReadStats:
    """What reading a corpus found: lines read, records kept, records skipped by reason."""

    lines: int = 0
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bad_lines: list[int] = field(default_factory=list)  #: first malformed line numbers
    field_issues: Counter[str] = field(default_factory=Counter)  #: "FIELD: why it gave no text" -> records

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        if reason == "malformed JSON" and len(self.bad_lines) < MAX_REPORTED_LINES:
            self.bad_lines.append(line)


def detect_format(path: Path) -> str:
    """``beir`` for corpus.jsonl, ``jsonl`` for .jsonl/.json/.ndjson, else ``text`` (a .gz etc. suffix is looked through)."""
    name = logical_name(path)
    if name == "corpus.jsonl":
        return "beir"
    if Path(name).suffix.lower() in (".jsonl", ".json", ".ndjson"):
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
    store_fields: Sequence[str] = (),
) -> Iterator[Record]:
    """Yield the documents of a corpus file, one at a time.

    ``id_field``/``text_fields`` name the JSON fields (defaults: ``id``/``text`` for JSONL,
    ``_id``/``title,text`` for BEIR). A name may be a dotted path into nested objects
    (``details.color``); a list on the way gives all its items' values. Several text fields
    are joined with a newline; a record where none of them holds text is skipped, and why each
    field gave no text is counted in ``stats.field_issues``. Plain text gives one document per
    non-empty line with its line number as id. Compressed files (gzip, bzip2, xz, zstd) are
    read as such. ``store_fields`` are the paths (same syntax) kept in each record's
    ``fields``, with their values as they are (lists and objects included). A file that
    changes while it is read raises :class:`~crossrank.errors.CorpusChanged`
    at its end.
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
        ignored = [flag for flag, value in (("--id", id_field), ("--text", text_fields), ("--store", store_fields))
                   if value]
        if ignored:
            log.warning("%s is read as plain text (one document per line, its number as id): %s ignored; "
                        "pass --format jsonl for JSON lines", source, " and ".join(ignored))
        yield from _read_text(source, counts)
        return
    default_id, default_text = ("_id", ("title", "text")) if kind == "beir" else ("id", ("text",))
    yield from _read_jsonl(
        source, id_field or default_id, tuple(text_fields or default_text), on_error, counts, tuple(store_fields)
    )


def _read_text(source: Path, stats: ReadStats) -> Iterator[Record]:
    with corpus_lines(source) as lines:
        for number, line in lines:
            stats.lines = number
            text = line.strip()
            if not text:
                stats.skip("empty line", number)
                continue
            if stats.records == 0 and text.startswith("{") and text.endswith("}"):
                log.warning("%s looks like JSON lines but is read as plain text (one document per line); "
                            "pass --format jsonl to read its fields", source)
            stats.records += 1
            yield Record(str(number), text)


def field_values(obj: Any, path: str) -> tuple[list[Any], str | None]:
    """The values at ``path`` in ``obj`` (a key, else a dotted path; lists give every item's value)
    and, when there are none, why: ``missing``, ``null``, ``not an object at 'details'``."""
    if isinstance(obj, dict) and path in obj:
        values = [obj[path]]
    else:
        values = [obj]
        for depth, key in enumerate(path.split(".")):
            found = []
            for value in values:
                items = value if isinstance(value, list) else [value]
                for item in items:
                    if isinstance(item, dict) and key in item:
                        found.append(item[key])
            if not found:
                where = ".".join(path.split(".")[:depth])
                return [], "missing" if depth == 0 or all(isinstance(v, dict) for v in values) else (
                    f"'{where}' is not an object")
            values = found
    flat: list[Any] = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    flat = [v for v in flat if v is not None]
    return flat, (None if flat else "null")


def _kind_of(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__)


def _texts(obj: dict[str, Any], name: str, stats: ReadStats) -> list[str]:
    values, why = field_values(obj, name)
    texts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    if not texts:
        other = [v for v in values if not isinstance(v, str)]
        why = why or (f"{_kind_of(other[0])}, not text" if other else "empty text")
        stats.field_issues[f"{name}: {why}"] += 1
    return texts


def _id_of(obj: dict[str, Any], name: str) -> str | None:
    values, _ = field_values(obj, name)
    if len(values) != 1 or isinstance(values[0], (dict, list, bool)) or str(values[0]) == "":
        return None
    return str(values[0])


def _read_jsonl(
    source: Path, id_field: str, text_fields: tuple[str, ...], on_error: OnError, stats: ReadStats,
    store: tuple[str, ...] = (),
) -> Iterator[Record]:
    with corpus_lines(source) as lines:
        for number, line in lines:
            stats.lines = number
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python parses
                reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                if on_error == "stop":
                    raise InvalidInput(f"{source}: line {number}: malformed JSON ({reason})") from None
                log.warning("%s: line %d: malformed JSON, skipped (%s)", source, number, reason)
                stats.skip("malformed JSON", number)
                continue
            if not isinstance(obj, dict):
                stats.skip("not a JSON object", number)
                continue
            raw_id = _id_of(obj, id_field)
            if raw_id is None:
                stats.skip(f"no '{id_field}'", number)
                continue
            parts = [text for name in text_fields for text in _texts(obj, name, stats)]
            if not parts:
                stats.skip(f"no text in {'/'.join(text_fields)}", number)
                continue
            stats.records += 1
            # undecodable bytes became U+FFFD above; a surrogate escaped in the JSON does too
            yield Record(replace_surrogates(raw_id), replace_surrogates("\n".join(parts)),
                         stored_fields(obj, store) if store else {})
