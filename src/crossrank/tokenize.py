"""Tokenization of (query, document) pairs into token-id rows, and padding rows into batches.

Built on the Hugging Face ``tokenizers`` library. Pairs are truncated on the document side
only, so the whole query is always kept (a query longer than half the budget is cut to half,
the only case where the query loses tokens; such a pair is flagged ``truncated`` as a cut
document is). In window mode every document is split into overlapping windows (each with the
full query), at most :attr:`PairTokenizer.max_windows`, and a ``owner`` array maps rows to pairs.

Only the head of a text that can be kept is tokenized (see ``PairTokenizer._heads``), in
batches of bounded size: the work and memory of a 10 MB document are those of its kept tokens.

Fast tokenizers are not safe to share across threads, so each thread gets its own copy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from crossrank.errors import InvalidInput, ModelError

#: a text is read in prefixes of this many characters per token needed, doubled until they
#: hold the tokens needed, up to ``_CHARS_PER_TOKEN`` (see ``PairTokenizer._heads``)
_FIRST_CHARS_PER_TOKEN = 6
_CHARS_PER_TOKEN = 64
#: the longest prefix of one text that is tokenized (the tokenizer takes 100-500 bytes of
#: memory per character while it works)
_MAX_HEAD_CHARS = 1 << 20
#: characters given to one ``encode_batch`` call
_BATCH_CHARS = 1 << 18
#: a document is scored over at most this many tokens' worth of windows (128 of 512 tokens)
WINDOW_TOKENS = 1 << 16


@dataclass
class TokenRows:
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
        #: most windows a document is cut into (``WINDOW_TOKENS`` tokens' worth)
        self.max_windows = max(1, WINDOW_TOKENS // self.max_length)

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

    # -- reading a bounded head of each text ---------------------------------------------------
    def _heads(self, texts: Sequence[str], need: int) -> list[_Head]:
        """For each text, a head that tokenizes like the whole text as far as ``need`` tokens go.

        A text longer than ``need * 12`` characters is tokenized in growing prefixes (6, 12, 24,
        48, 64 characters per token; never more than ``_MAX_HEAD_CHARS``) until a prefix holds
        more than ``need`` tokens before its last word: appending text changes only that word's
        tokens, so whatever keeps at most ``need`` tokens of the prefix keeps the text's own
        tokens and sees that it was longer. Work and memory are bounded by ``need``, not by the
        text: a 10 MB document costs what its kept tokens cost. A text with under ``need``
        tokens in the longest prefix (runs of dozens of characters per token) is cut there and
        flagged ``blind``.
        """
        out = [_Head(text) for text in texts]
        limit = min(need * _CHARS_PER_TOKEN, max(_MAX_HEAD_CHARS, need * _FIRST_CHARS_PER_TOKEN))
        size = min(need * _FIRST_CHARS_PER_TOKEN, limit)
        # up to twice the first prefix, reading the whole text costs less than a prefix and its use
        pending = [i for i, text in enumerate(texts) if len(text) > min(2 * size, limit)]
        while pending:
            still = []
            for start, end in _chunks([size] * len(pending)):
                part = pending[start:end]
                sliced = [texts[i][:size] for i in part]
                encodings = self._tokenizer("raw").encode_batch(sliced, add_special_tokens=False)
                for i, head, enc in zip(part, sliced, encodings):
                    settled = _settled(enc)
                    if settled > need or size >= limit:
                        out[i] = _Head(head, enc, blind=settled <= need)
                    elif len(texts[i]) > min(2 * size, limit):
                        still.append(i)
                    # else: the next prefix is the whole text, read as it is
            pending, size = still, min(2 * size, limit)
        return out

    def _cut(self, texts: Sequence[str], max_tokens: int) -> list[_Head]:
        """Each text cut after its first ``max_tokens`` tokens (``blind`` as in :meth:`_heads`)."""
        heads = self._heads(texts, max_tokens)
        whole = [i for i, head in enumerate(heads) if head.encoding is None]
        for start, end in _chunks([len(heads[i].text) for i in whole]):
            part = whole[start:end]
            encodings = self._tokenizer("raw").encode_batch([heads[i].text for i in part], add_special_tokens=False)
            for i, enc in zip(part, encodings):
                heads[i].encoding = enc
        out = []
        for head in heads:
            offsets = head.encoding.offsets if head.encoding is not None else []
            text = head.text[: offsets[max_tokens - 1][1]] if len(offsets) > max_tokens else head.text
            out.append(_Head(text, blind=head.blind))
        return out

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone, without special tokens."""
        return len(self._tokenizer("raw").encode(text, add_special_tokens=False).ids)

    @property
    def query_limit(self) -> int:
        """Most tokens of a query kept next to a document: half the pair's budget."""
        return (self.max_length - self.pair_overhead) // 2

    def fit_queries(self, queries: Sequence[str]) -> list[tuple[str, bool]]:
        """Each query cut to :attr:`query_limit` tokens, and whether it was cut."""
        distinct = list(dict.fromkeys(queries))
        fitted = {q: head.text for q, head in zip(distinct, self._cut(distinct, self.query_limit))}
        return [(fitted[q], len(fitted[q]) < len(q)) for q in queries]

    def _fit_pairs(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], np.ndarray]:
        """The pairs with queries fitted, and which pairs had their query cut."""
        fitted = self.fit_queries([q for q, _ in pairs])
        cut = np.fromiter((c for _, c in fitted), dtype=bool, count=len(pairs))
        return [(q, d) for (q, _), (_, d) in zip(fitted, pairs)], cut

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, pairs: Sequence[tuple[str, str]], max_tokens: int | None = None) -> TokenRows:
        """One row per pair, documents truncated to fit ``max_length`` (first cut after
        ``max_tokens`` tokens when given, as :meth:`cut_texts`). ``truncated`` flags a pair
        whose document or query did not fit whole."""
        pairs, truncated = self._fit_pairs(pairs)
        docs = self._documents(pairs, max_tokens, self.max_length)
        rows = _Rows()
        for start, end in _chunks(docs):
            encodings = self._tokenizer().encode_batch(
                [(q, d.text) for (q, _), d in zip(pairs[start:end], docs[start:end])])
            for i, enc in enumerate(encodings, start):
                truncated[i] |= bool(enc.overflowing) or docs[i].blind
                rows.add(enc, i)
        return rows.done(truncated)

    def encode_windows(
        self, pairs: Sequence[tuple[str, str]], stride: int, max_windows: int | None = None,
        max_tokens: int | None = None,
    ) -> TokenRows:
        """Overlapping windows of each document (``stride`` tokens shared between windows), at
        most ``max_windows`` and never more than :attr:`max_windows` per document."""
        windows = self.max_windows if max_windows is None else min(max_windows, self.max_windows)
        pairs, truncated = self._fit_pairs(pairs)
        # tokens the windows cover: the first window holds `room` document tokens, each next one
        # `room - stride` more; `room` is at most the budget less the shortest query (none)
        room = self.max_length - self.pair_overhead
        docs = self._documents(pairs, max_tokens, room + (windows - 1) * (room - stride))
        rows = _Rows()
        for start, end in _chunks(docs):
            encodings = self._tokenizer("window", stride).encode_batch(
                [(q, d.text) for (q, _), d in zip(pairs[start:end], docs[start:end])])
            for i, enc in enumerate(encodings, start):
                parts = [enc, *enc.overflowing]
                if len(parts) > windows:
                    parts = parts[:windows]
                    truncated[i] = True
                truncated[i] |= docs[i].blind
                for part in parts:
                    rows.add(part, i)
        return rows.done(truncated)

    def _documents(self, pairs: Sequence[tuple[str, str]], max_tokens: int | None, need: int) -> list[_Head]:
        """Each document's head, enough for ``need`` tokens; cut after ``max_tokens`` first."""
        texts = [d for _, d in pairs]
        if max_tokens is not None and max_tokens < need:
            return self._cut(texts, max_tokens)
        return self._heads(texts, need)

    def cut_texts(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut after its first ``max_tokens`` tokens (Cohere's ``max_tokens_per_doc``).

        Reads only what is kept (see :meth:`_heads`); past the most any scoring keeps
        (:attr:`max_windows` windows of ``max_length``) a text is cut there."""
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidInput(f"max_tokens must be a whole number, at least 1; got {max_tokens!r}")
        return [head.text for head in self._cut(texts, min(max_tokens, self.max_windows * self.max_length))]

    def encode_texts(self, texts: Sequence[str]) -> TokenRows:
        """Single texts (bi-encoders), truncated to ``max_length``."""
        heads = self._heads(texts, self.max_length)
        truncated = np.zeros(len(texts), dtype=bool)
        rows = _Rows()
        for start, end in _chunks(heads):
            for i, enc in enumerate(self._tokenizer("single").encode_batch([h.text for h in heads[start:end]]), start):
                truncated[i] = bool(enc.overflowing) or heads[i].blind
                rows.add(enc, i)
        return rows.done(truncated)


@dataclass
class _Head:
    """A text or its head (see ``PairTokenizer._heads``), with its raw tokens when read."""

    text: str
    encoding: Encoding | None = None
    blind: bool = False  # cut without seeing that the rest is not needed


def _settled(enc: Encoding) -> int:
    """Tokens of ``enc`` before its last word, which text appended after it cannot change."""
    words = enc.word_ids
    end = len(words)
    while end and words[end - 1] == words[-1]:
        end -= 1
    return end


def _chunks(items: Sequence[int] | Sequence[_Head]) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of texts (heads, or their sizes) of at most ``_BATCH_CHARS``
    characters in all, one text at least: what one ``encode_batch`` call is given, so that
    the tokenizer's memory (a few hundred bytes per character) stays bounded."""
    sizes = [item if isinstance(item, int) else len(item.text) for item in items]
    start = total = 0
    for i, size in enumerate(sizes):
        if i > start and total + size > _BATCH_CHARS:
            yield start, i
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)


class _Rows:
    """Token rows taken from encodings as they are made, so the encodings can go."""

    def __init__(self) -> None:
        self.ids: list[list[int]] = []
        self.type_ids: list[list[int]] = []
        self.owner: list[int] = []

    def add(self, enc: Encoding, owner: int) -> None:
        self.ids.append(enc.ids)
        self.type_ids.append(enc.type_ids)
        self.owner.append(owner)

    def done(self, truncated: np.ndarray) -> TokenRows:
        return TokenRows(self.ids, self.type_ids, np.asarray(self.owner, dtype=np.int64), truncated)


def pad_batch(rows: TokenRows, index: Sequence[int] | np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
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
