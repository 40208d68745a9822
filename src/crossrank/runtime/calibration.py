"""The calibration set of ``mode="int8"``: the user's own (query, document) pairs.

Given as a file or in memory. A file holds one item per line, either kind in one file:

* JSON Lines: ``{"query": "crocs", "documents": ["Crocs Kids' Baya Clog", "a sandal"]}``
* TSV: ``query<TAB>document``

Pairs are grouped by query. A quarter of the queries that have several documents is held out
to measure ranking fidelity (never used to calibrate); the rest calibrates the quantizer. Each
held-out query ranks every held-out document (its own and the other held-out queries'), so the
lists it is judged on are as long as served lists (up to :data:`VALIDATION_LIST`), not just its
own few documents: a short list hides the swaps between close scores that a 100-document list shows.

>>> calibration = read_calibration([("crocs", "Crocs Kids' Baya Clog"), ("crocs", "a sandal")] * 8)
>>> len(calibration.pairs)
16
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.texts import check_pairs

#: fewer pairs than this cannot both calibrate and measure fidelity
MIN_PAIRS = 8
#: how far Spearman's rank correlation against the unquantized model may fall below 1.0 on the
#: worst held-out query before the int8 search keeps more matrix ops in higher precision
DEFAULT_MAX_DROP = 0.01
#: the share of the unquantized model's top 10 that the worst held-out query must keep
DEFAULT_MIN_OVERLAP = 0.9
#: at most this many pairs calibrate, and this many measure fidelity (both cost time at load)
MAX_CALIBRATION_PAIRS, MAX_VALIDATION_PAIRS = 512, 512
#: the most documents one held-out query ranks (a served list's length)
VALIDATION_LIST = 100
#: fewer held-out queries than this bound unseen queries loosely: on a model `crossrank train` made, a
#: search judged on 4 held-out queries accepted an int8 model that kept 7 of 10 on unseen queries
#: (Spearman 0.983); judged on 6 (16 queries per kind) it kept more in higher precision and 9 of 10 (0.993)
MIN_HELD_OUT = 6
FORMAT = ('JSON Lines {"query": "...", "documents": ["...", ...]} or TSV lines query<TAB>document, '
          "one item per line")

Pair = tuple[str, str]


@dataclass(frozen=True)
class Calibration:
    """Pairs to calibrate on, and the ranking fidelity the int8 search must keep on the worst held-out
    query: Spearman >= 1 - ``max_drop`` and at least ``min_overlap`` of the top 10."""

    pairs: tuple[Pair, ...]
    max_drop: float = DEFAULT_MAX_DROP
    source: str = "pairs given in memory"
    min_overlap: float = DEFAULT_MIN_OVERLAP

    def __post_init__(self) -> None:
        if len(self.pairs) < MIN_PAIRS:
            raise InvalidInput(f"the int8 calibration set ({self.source}) has {len(self.pairs)} (query, document) "
                               f"pairs; it needs at least {MIN_PAIRS}, ideally a few hundred like the ones served")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) or not 0 <= self.max_drop <= 2:
            raise InvalidInput(f"max_drop must be a number from 0 to 2 (a drop of Spearman's rank correlation, which "
                               f"runs from -1 to 1; 2 accepts any), got {self.max_drop!r}")
        bad = isinstance(self.min_overlap, bool) or not isinstance(self.min_overlap, (int, float))
        if bad or not 0 <= self.min_overlap <= 1:
            raise InvalidInput(f"min_overlap must be a share from 0 to 1 of the top 10 to keep, got {self.min_overlap!r}")

    def accepts(self, spearman_min: float, overlap_min: float) -> bool:
        """Whether the worst held-out query's Spearman and top-10 overlap are within the bounds."""
        return spearman_min >= 1.0 - self.max_drop and overlap_min >= self.min_overlap

    def digest(self) -> str:
        """What the quantized model depends on in this set (its pairs and bounds)."""
        text = json.dumps([self.pairs, self.max_drop, self.min_overlap, VALIDATION_LIST], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def split(self) -> tuple[list[Pair], list[list[Pair]]]:
        """(calibration pairs, held-out lists of one query each) — disjoint: no held-out query or document
        calibrates. A held-out query's list holds every held-out document (its own first)."""
        groups: dict[str, list[int]] = {}
        for i, pair in enumerate(self.pairs):
            groups.setdefault(pair[0], []).append(i)
        several = [g for g in groups.values() if len(g) >= 2]
        held = several[3::4] or (several[-1:] if len(groups) > 1 else [])
        if not held:  # one query, or single documents: every 4th pair, ranked as one list
            held = [list(range(3, len(self.pairs), 4))]
        held_set = {i for g in held for i in g}
        rest = [self.pairs[i] for i in range(len(self.pairs)) if i not in held_set]
        documents = list(dict.fromkeys(self.pairs[i][1] for g in held for i in g))
        held_docs = set(documents)
        rest = [pair for pair in rest if pair[1] not in held_docs]
        validation: list[list[Pair]] = []
        size = 0
        for group in held:
            if len(held) == 1:  # one list only (one query, or one document per query): as it is
                pairs = [self.pairs[i] for i in group]
            else:
                ranked = dict.fromkeys([self.pairs[i][1] for i in group] + documents)
                pairs = [(self.pairs[group[0]][0], doc) for doc in list(ranked)[:VALIDATION_LIST]]
            pairs = pairs[: MAX_VALIDATION_PAIRS - size]
            if len(pairs) < 2:
                break
            validation.append(pairs)
            size += len(pairs)
        return rest[:MAX_CALIBRATION_PAIRS], validation


def held_out_warning(held_out: int, source: str) -> str | None:
    """What to tell the user when ``held_out`` queries are too few to bound the ranking of unseen ones."""
    if held_out >= MIN_HELD_OUT:
        return None
    return (f"int8: the calibration set ({source}) holds out {held_out} queries to measure ranking fidelity; "
            f"with fewer than {MIN_HELD_OUT} an accepted model may reorder unseen queries' top 10 more than the "
            f"bound allows. Give at least {4 * MIN_HELD_OUT} queries with several documents each (a quarter is held "
            f"out, each ranking up to {VALIDATION_LIST} documents)")


CalibrationInput = str | Path | Sequence[Pair] | Calibration


def read_calibration(value: CalibrationInput) -> Calibration:
    """A :class:`Calibration` from a file path, (query, document) pairs, or one already made."""
    if isinstance(value, Calibration):
        return value
    if isinstance(value, (str, Path)):
        return Calibration(tuple(read_pairs_file(Path(value))), source=str(value))
    try:
        pairs = check_pairs(value)
    except InvalidInput as exc:
        raise InvalidInput(f"calibration must be a file ({FORMAT}) or a list of (query, document) pairs: "
                           f"{exc}") from None
    return Calibration(tuple(pairs))


def read_pairs_file(path: Path) -> list[Pair]:
    """The (query, document) pairs of a JSONL/TSV calibration file; :class:`InvalidInput` saying
    where and what is wrong, and the expected format."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"calibration file {path} does not exist (expected {FORMAT})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read calibration file {path}: {exc} (expected UTF-8 text: {FORMAT})") from None
    pairs: list[Pair] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            pairs.extend(_line_pairs(line))
        except InvalidInput as exc:
            raise InvalidInput(f"calibration file {path}, line {number}: {exc}; expected {FORMAT}") from None
    if not pairs:
        raise InvalidInput(f"calibration file {path} holds no (query, document) pairs; expected {FORMAT}")
    return pairs


def _line_pairs(line: str) -> list[Pair]:
    if line.lstrip().startswith("{"):
        try:
            item: Any = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(f"not valid JSON ({exc.args[0]})") from None
        query, documents = item.get("query"), item.get("documents")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput('"query" must be a non-empty string')
        if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
            raise InvalidInput('"documents" must be a non-empty list of strings')
        return check_pairs([(query, d) for d in documents])
    fields = line.split("\t")
    if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
        raise InvalidInput(f"a TSV line needs exactly two non-empty fields, found {len(fields)} field(s)")
    return check_pairs([(fields[0], fields[1])])


def calibration_for(mode: str, value: CalibrationInput | None) -> Calibration | None:
    """The checked calibration set of ``mode`` (int8 needs one; other modes take none)."""
    if mode != "int8":
        if value is not None:
            raise InvalidInput(f"calibration is used by mode='int8' only, not mode={mode!r}")
        return None
    if value is None:
        raise InvalidInput(
            "mode='int8' needs a calibration set of your own (query, document) pairs, like the ones you serve: "
            "pass calibration= (a file path or a list of pairs) to Reranker, --calibration FILE on the command "
            f"line, or the per-model key 'calibration: FILE' in a server config. The file holds {FORMAT}.")
    return read_calibration(value)
