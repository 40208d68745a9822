"""The cross-encoder reranker: the library's main entry point."""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.cache import ScoreCache
from crossrank.errors import InvalidInput
from crossrank.models.llm_head import TEMPLATES, template_tokenizer
from crossrank.models.load import check_score_output, load_model
from crossrank.options import (
    LongDocuments,
    ScoreOptions,
    check_instruction,
    check_long_documents,
    check_max_length,
    check_options,
    check_top_k,
    check_window_stride,
    instruction_in_effect,
    whole_number,
)
from crossrank.runtime.base import Runtime, check_max_batch_tokens
from crossrank.runtime.build import RuntimeSpec, make_int8_runtime, make_runtime, measure_auto
from crossrank.runtime.calibration import CalibrationInput, calibration_for
from crossrank.runtime.select import Mode, check_threads, choose_runtime
from crossrank.scores import (
    Activation,
    Scores,
    Truncation,
    activate,
    check_activation,
    max_per_owner,
    ranked_order,
    relevance_logit,
)
from crossrank.texts import check_documents, check_pairs, check_text
from crossrank.tokenize import PairTokenizer, TokenRows, pad_batch

__all__ = ["LongDocuments", "Ranked", "Reranker", "Scores", "Truncation"]


@dataclass(frozen=True)
class Ranked:
    """One document of a ranking: its position in the input, its score, its text."""

    index: int
    score: float
    document: str


class Reranker:
    """Score (query, document) pairs with a cross-encoder (ONNX Runtime, OpenVINO or PyTorch).

    >>> reranker = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> [r.index for r in reranker.rank("crocs", ["Crocs Kids' Baya Clog", "a sandal"])]  # doctest: +SKIP
    [0, 1]

    The same offline, on a tiny random-weight model (its scores are noise, their shapes real):

    >>> import tempfile
    >>> from crossrank.models.synthetic import build_random_model
    >>> model = build_random_model(f"{tempfile.mkdtemp()}/tiny-ce", layers=1)
    >>> reranker = Reranker(model, cache_dir=f"{tempfile.gettempdir()}/crossrank-examples")
    >>> docs = ["Crocs Kids' Baya Clog", "a sandal", "boots"]
    >>> reranker.score("crocs", docs).shape
    (3,)
    >>> reranker.rank("crocs", docs, top_k=2)  # doctest: +ELLIPSIS
    [Ranked(index=..., score=0..., document=...), Ranked(index=..., score=0..., document=...)]

    ``model`` is a hub id, a catalogue alias or a local directory in the hub layout.
    ``max_length`` caps tokens per pair (default: the model's own limit). Documents are
    sorted by length and padded per batch of at most ``batch_size`` pairs and
    ``max_batch_tokens`` tokens, padding counted (rows × longest row; default: the runtime's,
    derived from its threads on the CPU, see :mod:`crossrank.runtime.base`). ``activation="sigmoid"``
    gives scores in 0..1; ``"none"`` gives the raw relevance logit. With
    ``long_documents="window"`` a document longer than the limit is scored as overlapping
    windows and keeps its best window's score. Safe to use from several threads.

    ``mode="exact"`` runs fp32 ONNX Runtime (the model's own scores, within 1e-4 of
    ``transformers``); ``"fast"`` runs bf16 OpenVINO on CPUs with native bf16 (several
    times faster, same ranking; needs ``crossrank[fast]``); ``"auto"`` picks fast where it
    is available, else exact. ``providers=["cuda"]`` runs on an NVIDIA GPU: fp16 PyTorch in
    the fast and auto modes, fp32 in the exact mode (needs ``crossrank[torch]`` with a CUDA
    build of torch, or onnxruntime-gpu for exact); without a GPU it falls back to the CPU.
    ``mode="int8"`` runs int8 matrix products, quantized once (cached) on ``calibration``, your own
    (query, document) pairs (a JSONL/TSV file or a list of pairs, see
    :mod:`crossrank.runtime.calibration`), the ops whose quantization moves the ranking kept in
    higher precision, on ONNX Runtime (dynamic int8) or OpenVINO (static int8, with ``crossrank[int8]``),
    whichever measured faster here (CPU only, not LLM rerankers; see :mod:`crossrank.runtime.int8`).
    ``runtime`` forces ``"onnxruntime"``, ``"openvino"`` or ``"torch"`` (int8: one of the first two).
    ``cache`` (a :class:`ScoreCache` or a maximum entry count) reuses the scores of
    (query, document) pairs seen before.

    LLM yes/no rerankers: ``instruction`` replaces the family's default instruction, and each
    call may pass its own ``instruction=`` (a model whose head reads none refuses one);
    ``template`` names the prompt-template family (``"qwen3-reranker"``,
    ``"mxbai-rerank-v2"``, ``"bge-reranker-v2-gemma"``) of a causal LM whose files do not
    declare one and that the catalogue does not know (see :mod:`crossrank.models.llm_head`).
    ``trust_remote_code=True`` lets a model whose repository
    ships its own modelling code (``auto_map`` in its config) run that Python code on this machine,
    to export or load it; without it such a model is refused (its ONNX file, where the repository
    ships one, runs without it).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        activation: Activation = "sigmoid",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        long_documents: LongDocuments = "truncate",
        window_stride: int | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        mode: Mode = "exact",
        runtime: str | None = None,
        cache: ScoreCache | int | None = None,
        instruction: str | None = None,
        template: str | None = None,
        trust_remote_code: bool = False,
        calibration: CalibrationInput | None = None,
    ) -> None:
        self.batch_size = whole_number(batch_size, "batch_size", 1)
        self._max_batch_tokens = check_max_batch_tokens(max_batch_tokens)
        threads = check_threads(threads)
        self.long_documents: LongDocuments = check_long_documents(long_documents)
        self.activation = check_activation(activation)
        self.choice = choose_runtime(mode, runtime, providers)
        self.mode = self.choice.mode  #: the mode in effect: "exact", "fast" or "int8"
        self._calibration = calibration_for(mode, calibration)
        self.int8_report: dict[str, Any] | None = None  #: int8 mode: what was quantized, fidelity measured
        if template is not None and (not isinstance(template, str) or template not in TEMPLATES):
            raise InvalidInput(f"template must be one of {', '.join(TEMPLATES)} (an LLM reranker's prompt "
                               f"template), not {template!r}")
        loaded = load_model(
            model, task="sequence-classification", revision=revision, cache_dir=cache_dir,
            weights=self.choice.runtime == "torch", template=template, trust_remote_code=trust_remote_code,
        )
        self.name = loaded.name
        self.config = loaded.config
        self.template = loaded.head.template if loaded.head is not None else None
        if self.mode == "int8" and self.template is not None:
            raise InvalidInput(f"mode='int8' quantizes encoder cross-encoders; {self.name} is an LLM reranker "
                               f"({self.template.family}): use mode 'exact' or 'fast'")
        #: how the model scores, for messages and descriptions
        self.head = loaded.head.describe() if loaded.head is not None else "its ONNX graph"
        #: the default instruction in the prompt of an LLM reranker (its family's when not given); None: the
        #: head reads none
        self.instruction = instruction_in_effect(
            check_instruction(instruction), self.template.default_instruction if self.template else None,
            self.name, self.head, self.template is not None)
        limit = check_max_length(max_length, loaded.config.max_length, loaded.name)
        self._base_tokenizer, self._pad_id = loaded.tokenizer, loaded.config.pad_token_id
        #: tokenizers of other instructions, for families that put the instruction in the template's fixed parts
        self._instruction_tokenizers: OrderedDict[str, PairTokenizer] = OrderedDict()
        self.tokenizer = self._prompt_tokenizer(instruction, limit)
        self.max_length = self.tokenizer.max_length
        # a quarter of max_length, or less where a prompt template leaves little room for the document
        budget = self.max_length - self.tokenizer.pair_overhead
        default_stride = max(0, min(self.max_length // 4, budget - budget // 2 - 1))
        self.window_stride = check_window_stride(
            default_stride if window_stride is None else window_stride, self.max_length,
            self.tokenizer.pair_overhead)
        from crossrank.models.export import default_cache_dir

        spec = RuntimeSpec(loaded, providers, threads, Path(cache_dir) if cache_dir else default_cache_dir(),
                           self.tokenizer.pad_id, self.max_length, self._max_batch_tokens)
        self.runtime: Runtime
        if self._calibration is not None:
            self.runtime, self.int8_report, why = make_int8_runtime(spec, self._calibration, self._calibration_batches,
                                                                    runtime)
            self.choice = replace(self.choice, runtime=self.int8_report["engine"], reason=why)
        else:
            self.runtime = make_runtime(spec, self.choice)
        if self.runtime.output_shape is not None:  # a graph: refused now if it outputs no scores
            check_score_output(self.name, self.runtime.output, self.runtime.output_shape)
        if mode == "auto" and runtime is None and self.choice.runtime == "openvino":
            self.runtime, self.choice = measure_auto(spec, self.choice, self.runtime)
            self.mode = self.choice.mode
        if isinstance(cache, bool) or not isinstance(cache, (ScoreCache, int, type(None))):
            raise InvalidInput("cache must be a ScoreCache, a maximum number of entries, or None")
        self.cache = ScoreCache(cache) if isinstance(cache, int) and cache > 0 else (
            cache if isinstance(cache, ScoreCache) else None
        )
        source = loaded.onnx_file or loaded.files.directory
        calibrated = self._calibration.digest() if self._calibration is not None else ""
        self._cache_key = f"{self.name}|{source}|{self.choice.runtime}-{self.choice.precision}{calibrated}"
        self._lock = threading.Lock()
        self.truncated_pairs = 0  #: pairs whose document did not fit, since this object was made

    # -- the library API -------------------------------------------------------------------
    def score(self, query: str, documents: Sequence[str], **options: Any) -> np.ndarray:
        """Scores of ``documents`` for ``query``, in input order."""
        query = check_text(query, "query")
        return self.score_pairs([(query, doc) for doc in check_documents(documents)], **options)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], **options: Any) -> np.ndarray:
        """Scores of (query, document) pairs, in input order."""
        return self.score_details(pairs, **options).values

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None, **options: Any) -> list[Ranked]:
        """Documents sorted by score (highest first; ties keep input order), cut to ``top_k``.

        Each :class:`Ranked` keeps the document's position in ``documents``:

        >>> import tempfile
        >>> from crossrank.models.synthetic import build_random_model
        >>> model = build_random_model(f"{tempfile.mkdtemp()}/tiny-ce", layers=1)
        >>> reranker = Reranker(model, cache_dir=f"{tempfile.gettempdir()}/crossrank-examples")
        >>> docs = ["Crocs Kids' Baya Clog", "a sandal", "boots"]
        >>> ranked = reranker.rank("crocs", docs)
        >>> sorted(r.index for r in ranked), all(docs[r.index] == r.document for r in ranked)
        ([0, 1, 2], True)
        >>> [r.score for r in ranked] == sorted(reranker.score("crocs", docs).tolist(), reverse=True)
        True
        """
        top_k = check_top_k(top_k)
        docs = check_documents(documents)
        scores = self.score(query, docs, **options)
        return [Ranked(i, float(scores[i]), docs[i]) for i in ranked_order(scores, top_k)]

    def score_details(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        activation: Activation | None = None,
        long_documents: LongDocuments | None = None,
        max_windows: int | None = None,
        max_tokens: int | None = None,
        instruction: str | None = None,
    ) -> Scores:
        """Scores plus per-pair truncation flags (a document or query that did not fit whole),
        and the instruction and truncation the call used.

        Options override the instance defaults: ``long_documents``, ``max_windows`` (at most
        that many windows per document, and never more than ``tokenizer.max_windows``),
        ``max_tokens`` (each document first cut after that many tokens), ``instruction`` (an
        LLM reranker's prompt instruction; refused by a head that reads none).

        >>> reranker.score_details([("crocs", "Crocs Kids' Baya Clog")],
        ...                        instruction="Find shoes for children").instruction  # doctest: +SKIP
        'Find shoes for children'
        """
        opts = check_options(activation=activation, long_documents=long_documents, max_windows=max_windows,
                             max_tokens=max_tokens, instruction=instruction)
        self.instruction_for(opts.instruction)  # a head that reads none refuses one before any work
        checked = check_pairs(pairs)
        act = opts.activation or self.activation
        if not checked:
            return self.details(np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool), opts)
        if self.cache is not None:
            logit, truncated = self._cached_logits(checked, opts)
        else:
            rows = self._tokenize(checked, opts)
            logit = max_per_owner(self.infer(rows), rows.owner, len(checked))
            truncated = rows.truncated
        with self._lock:
            self.truncated_pairs += int(truncated.sum())
        return self.details(activate(logit, act), truncated, opts)

    def instruction_for(self, requested: str | None) -> str | None:
        """The instruction a call with ``requested`` (checked) uses; :class:`InvalidInput` when the
        model's head reads none."""
        return instruction_in_effect(requested, self.instruction, self.name, self.head, self.template is not None)

    def truncation(self, opts: ScoreOptions = ScoreOptions()) -> Truncation:
        """How a call with ``opts`` fits its pairs: what is cut, where, and the limits."""
        return Truncation(
            max_length=self.max_length,
            cut="document only" if self.template is not None else "document, and a query past query_limit tokens",
            query_limit=self.tokenizer.query_limit,
            long_documents=opts.long_documents or self.long_documents,
            window_stride=self.window_stride,
            max_windows=opts.max_windows,
            max_tokens=opts.max_tokens,
        )

    def details(self, values: np.ndarray, truncated: np.ndarray, opts: ScoreOptions) -> Scores:
        """A call's :class:`Scores` with the instruction and truncation it used."""
        return Scores(values, truncated, self.instruction_for(opts.instruction), self.truncation(opts))

    def describe(self) -> dict[str, object]:
        """The prompt and truncation defaults, for a server's model descriptions."""
        return {
            "head": self.head,
            "template": self.template.family if self.template is not None else None,
            "instruction": self.instruction,
            "max_length": self.max_length,
            "truncation": self.truncation().to_dict(),
            **({"int8": self.int8_report} if self.int8_report is not None else {}),
        }

    def _cached_logits(self, pairs: list[tuple[str, str]], opts: ScoreOptions) -> tuple[np.ndarray, np.ndarray]:
        """Logits from the cache where present; the misses are scored in one pass and stored."""
        assert self.cache is not None
        options = (f"{self.max_length}|{opts.long_documents or self.long_documents}|{self.window_stride}|"
                   f"{opts.max_windows}|{opts.max_tokens}|{self.instruction_for(opts.instruction)}")
        model_key = f"{self._cache_key}|{options}"
        keys = [self.cache.key(model_key, q, d) for q, d in pairs]
        logit = np.empty(len(pairs), dtype=np.float64)
        truncated = np.zeros(len(pairs), dtype=bool)
        missing: dict[tuple[str, str, str], list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if key not in missing else None
            if hit is None:
                missing.setdefault(key, []).append(i)
            else:
                logit[i], truncated[i] = hit
        if missing:
            first = [positions[0] for positions in missing.values()]
            rows = self._tokenize([pairs[i] for i in first], opts)
            fresh = max_per_owner(self.infer(rows), rows.owner, len(first))
            for j, (key, positions) in enumerate(missing.items()):
                self.cache.put(key, float(fresh[j]), bool(rows.truncated[j]))
                logit[positions] = fresh[j]
                truncated[positions] = rows.truncated[j]
        return logit, truncated

    # -- the seams the server's scheduler uses (crossrank.scheduler.PairScorer) -------------
    def tokenize(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        long_documents: LongDocuments | None = None,
        max_windows: int | None = None,
        max_tokens: int | None = None,
        instruction: str | None = None,
    ) -> TokenRows:
        """The checked pairs' token rows (one per pair, or per window), for :meth:`infer`; each
        row holds its own prompt, so rows of calls with different instructions may share a batch."""
        opts = check_options(long_documents=long_documents, max_windows=max_windows, max_tokens=max_tokens,
                             instruction=instruction)
        return self._tokenize(check_pairs(pairs), opts)

    def encode(self, pairs: Sequence[tuple[str, str]], **options: Any) -> TokenRows:
        """Deprecated name of :meth:`tokenize` (it tokenizes; it computes no encoding)."""
        warnings.warn("Reranker.encode is deprecated; use Reranker.tokenize", DeprecationWarning, stacklevel=2)
        return self.tokenize(pairs, **options)

    def _tokenize(self, pairs: Sequence[tuple[str, str]], opts: ScoreOptions) -> TokenRows:
        instruction = self.instruction_for(opts.instruction)
        tokenizer = self._tokenizer_for(instruction)
        if self.template is not None:  # the prompt around each pair; the tokenizer adds prefix and suffix
            pairs = [self.template.format_pair(q, d, instruction) for q, d in pairs]
            self._check_prompt_room([q for q, _ in pairs], tokenizer)
        if (opts.long_documents or self.long_documents) == "window":
            return tokenizer.encode_windows(pairs, self.window_stride, opts.max_windows, opts.max_tokens)
        return tokenizer.encode(pairs, opts.max_tokens)

    def _prompt_tokenizer(self, instruction: str | None, limit: int) -> PairTokenizer:
        """The pair tokenizer with the template's fixed parts around the pairs (``instruction`` filled
        in where the family puts it there); refused when they leave no room in ``limit``."""
        tokenizer = self._base_tokenizer
        if self.template is not None and instruction:
            tokenizer = template_tokenizer(tokenizer, self.template, instruction)
        paired = PairTokenizer(tokenizer, limit, self._pad_id)
        if self.template is not None and paired.pair_overhead > paired.max_length - 2:
            raise InvalidInput(
                f"the prompt template of {self.name} ({self.template.family}) takes {paired.pair_overhead} "
                f"tokens with its instruction, leaving no room in max_length {paired.max_length} for the query and "
                f"the document; shorten the instruction or raise max_length"
            )
        return paired

    def _tokenizer_for(self, instruction: str | None) -> PairTokenizer:
        """The tokenizer of a call's instruction: the default one, unless the family puts the
        instruction in the template's fixed parts and the call asks for another (kept, up to 32)."""
        if (self.template is None or not self.template.instruction_in_fixed_parts or instruction is None
                or instruction == self.instruction):
            return self.tokenizer
        with self._lock:
            found = self._instruction_tokenizers.get(instruction)
            if found is not None:
                self._instruction_tokenizers.move_to_end(instruction)
                return found
        made = self._prompt_tokenizer(instruction, self.max_length)
        check_window_stride(self.window_stride, made.max_length, made.pair_overhead)
        with self._lock:
            self._instruction_tokenizers[instruction] = made
            while len(self._instruction_tokenizers) > 32:
                self._instruction_tokenizers.popitem(last=False)
        return made

    def _check_prompt_room(self, prompts: list[str], tokenizer: PairTokenizer | None = None) -> None:
        """A templated query is never cut (it would cut the template): refuse one that leaves no room."""
        tokenizer = tokenizer or self.tokenizer
        for prompt, cut in dict(zip(prompts, (c for _, c in tokenizer.fit_queries(prompts)))).items():
            if cut:
                size = tokenizer.count_tokens(prompt)
                raise InvalidInput(
                    f"the instruction and query take {size} tokens and the prompt template "
                    f"{tokenizer.pair_overhead} more; max_length {self.max_length} keeps at most "
                    f"{tokenizer.query_limit} for them so that the document has room. Shorten the "
                    f"instruction or the query, or raise max_length."
                )

    @property
    def max_batch_tokens(self) -> int | None:
        """Most tokens one model call holds, padding counted: the runtime's budget in effect (None: no bound)."""
        return self.runtime.max_batch_tokens

    def plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        """The batches (index arrays into ``lengths``) in which ``infer`` runs rows of these lengths."""
        return self.runtime.plan(lengths, self.batch_size)  # each runtime shapes its own

    def infer(self, rows: TokenRows, index: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Relevance logits (float64) of the selected rows (all by default), in :meth:`plan`'s batches."""
        selected = np.arange(len(rows.ids)) if index is None else np.asarray(index, dtype=np.int64)
        out = np.empty(len(selected), dtype=np.float64)
        for batch in self.plan(rows.lengths[selected]):
            feed = pad_batch(rows, selected[batch], self.tokenizer.pad_id)
            out[batch] = relevance_logit(self.runtime.run(feed))
        return out

    def _calibration_batches(self, pairs: list[tuple[str, str]]) -> list[dict[str, np.ndarray]]:
        """Calibration pairs as padded batches, tokenized as this reranker serves them (int8 mode)."""
        from crossrank.runtime.openvino import plan_power_of_two

        rows = self._tokenize(check_pairs(pairs), ScoreOptions())
        return [pad_batch(rows, b, self.tokenizer.pad_id) for b in plan_power_of_two(rows.lengths, 16, 4096)]

    def __repr__(self) -> str:
        return (
            f"Reranker({self.name!r}, mode={self.mode!r}, max_length={self.max_length}, "
            f"providers={self.runtime.providers})"
        )
