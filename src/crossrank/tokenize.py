"""Tokenization of (query, document) pairs into token-id rows, and padding rows into batches.

Built on the Hugging Face ``tokenizers`` library. Pairs are truncated on the document side
only, so the whole query is always kept (a query longer than half the budget is cut to half,
the only case where the query loses tokens). In window mode every document is split into
overlapping windows (each with the full query) and a ``owner`` array maps rows to pairs.

Fast tokenizers are not safe to share across threads, so each thread gets its own copy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from crossrank.errors import InvalidInput, ModelError

#: a kept document is at most this many characters per token budget before tokenizing;
#: beyond it the text is cut first (exactness is re-checked, see ``_encode_truncated``).
_CHARS_PER_TOKEN = 64


@dataclass
class EncodedRows:
    """Ragged token rows for a list of pairs (one row per pair, or per window)."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    owner: np.ndarray  # row -> index of its pair
    truncated: np.ndarray  # per pair: the document did not fit whole

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(r) for r in self.ids), dtype=np.int64, count=len(self.ids))


def load_tokenizer(directory: Path) -> Tokenizer:
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise ModelError(
            f"{directory} has no tokenizer.json (the fast-tokenizer file crossrank reads); "
            f"save one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)"
        )
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ModelError(f"{path} could not be read as a tokenizer: {exc}") from exc


class PairTokenizer:
    """Encode (query, document) pairs for a cross-encoder.

    ``max_length`` counts every token of the pair including special tokens.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: int | None = None) -> None:
        self.max_length = int(max_length)
        if self.max_length < 8:
            raise ModelError(f"max_length {max_length} is too small to hold a query and a document")
        self._json = tokenizer.to_str()
        self._local = threading.local()
        probe = self._tokenizer()
        self.pair_overhead = probe.num_special_tokens_to_add(True)
        self.single_overhead = probe.num_special_tokens_to_add(False)
        if pad_id is None:
            padding = tokenizer.padding
            pad_id = padding["pad_id"] if padding else None
        if pad_id is None:
            for token in ("[PAD]", "<pad>", "<|padding|>"):
                pad_id = probe.token_to_id(token)
                if pad_id is not None:
                    break
        self.pad_id = int(pad_id or 0)

    def _tokenizer(self, purpose: str = "pair", stride: int = 0) -> Tokenizer:
        """This thread's tokenizer for ``purpose``.

        ``pair``: document-side truncation; ``window``: the same with overflowing windows
        sharing ``stride`` tokens; ``single``: one text truncated to ``max_length``;
        ``raw``: no truncation.
        """
        cache: dict[tuple[str, int], Tokenizer] = self._local.__dict__.setdefault("tokenizers", {})
        key = (purpose, stride)
        tok = cache.get(key)
        if tok is None:
            tok = Tokenizer.from_str(self._json)
            tok.no_padding()
            if purpose == "raw":
                tok.no_truncation()
            elif purpose == "single":
                tok.enable_truncation(self.max_length)
            else:
                tok.enable_truncation(self.max_length, strategy="only_second", stride=stride)
            cache[key] = tok
        return tok

    def _fit_query(self, query: str) -> str:
        """Cut a query that leaves less than half the budget for the document."""
        limit = (self.max_length - self.pair_overhead) // 2
        enc = self._tokenizer("raw").encode(query, add_special_tokens=False)
        if len(enc.ids) <= limit:
            return query
        return query[: enc.offsets[limit - 1][1]]

    def _fit_queries(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        fitted: dict[str, str] = {}
        threshold = (self.max_length - self.pair_overhead) // 2  # chars >= tokens for any text
        out = []
        for query, doc in pairs:
            if len(query) > threshold:
                if query not in fitted:
                    fitted[query] = self._fit_query(query)
                query = fitted[query]
            out.append((query, doc))
        return out

    def encode(self, pairs: Sequence[tuple[str, str]]) -> EncodedRows:
        """One row per pair, documents truncated to fit ``max_length``."""
        pairs = self._fit_queries(pairs)
        budget = self.max_length * _CHARS_PER_TOKEN
        cut = [(q, d[:budget]) if len(d) > budget else (q, d) for q, d in pairs]
        encodings = self._tokenizer().encode_batch(cut)
        truncated = np.zeros(len(pairs), dtype=bool)
        for i, enc in enumerate(encodings):
            if enc.overflowing:
                truncated[i] = True
            elif len(pairs[i][1]) > budget:  # a cut text that fit whole: encode the full text
                encodings[i] = self._tokenizer().encode(*pairs[i])
                truncated[i] = bool(encodings[i].overflowing)
        return self._rows(encodings, np.arange(len(pairs)), truncated)

    def encode_windows(
        self, pairs: Sequence[tuple[str, str]], stride: int, max_windows: int | None = None
    ) -> EncodedRows:
        """Overlapping windows of each document (``stride`` tokens shared between windows)."""
        pairs = self._fit_queries(pairs)
        encodings = self._tokenizer("window", stride).encode_batch(list(pairs))
        rows: list[Encoding] = []
        owner: list[int] = []
        truncated = np.zeros(len(pairs), dtype=bool)
        for i, enc in enumerate(encodings):
            windows = [enc, *enc.overflowing]
            if max_windows is not None and len(windows) > max_windows:
                windows = windows[:max_windows]
                truncated[i] = True
            rows.extend(windows)
            owner.extend([i] * len(windows))
        return self._rows(rows, np.asarray(owner, dtype=np.int64), truncated)

    @staticmethod
    def _rows(encodings: Sequence[Encoding], owner: np.ndarray, truncated: np.ndarray) -> EncodedRows:
        return EncodedRows(
            ids=[e.ids for e in encodings],
            type_ids=[e.type_ids for e in encodings],
            owner=owner,
            truncated=truncated,
        )

    def cut_texts(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut after its first ``max_tokens`` tokens (Cohere's ``max_tokens_per_doc``)."""
        if max_tokens < 1:
            raise InvalidInput("max_tokens must be at least 1")
        encodings = self._tokenizer("raw").encode_batch(list(texts), add_special_tokens=False)
        return [
            text if len(enc.offsets) <= max_tokens else text[: enc.offsets[max_tokens - 1][1]]
            for text, enc in zip(texts, encodings)
        ]

    def encode_texts(self, texts: Sequence[str]) -> EncodedRows:
        """Single texts (bi-encoders), truncated to ``max_length``."""
        encodings = self._tokenizer("single").encode_batch(list(texts))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(texts))
        return self._rows(encodings, np.arange(len(texts)), truncated)


def pad_batch(rows: EncodedRows, index: Sequence[int] | np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Pad the selected rows to their longest one: input_ids, attention_mask, token_type_ids."""
    width = max(len(rows.ids[i]) for i in index)
    n = len(index)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    for r, i in enumerate(index):
        length = len(rows.ids[i])
        ids[r, :length] = rows.ids[i]
        mask[r, :length] = 1
        types[r, :length] = rows.type_ids[i]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def plan_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Group row indices into batches, shortest rows first.

    A batch holds at most ``batch_size`` rows and, when ``max_tokens`` is set, at most
    ``max_tokens`` tokens counting padding (rows x longest row).
    """
    order = np.argsort(lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < batch_size:
            if max_tokens is not None and (end - start + 1) * int(lengths[order[end]]) > max_tokens:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    return batches
