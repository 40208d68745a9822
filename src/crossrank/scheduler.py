"""Dynamic batching across concurrent requests: one scheduler per served model.

The path of a rerank request::

    score(pairs) --(tokenizer thread)--> EncodedRows --> queue of rows (bounded, in pairs)
        --(inference thread)--> look-ahead window, sorted by length, packed by token budget
        --> Reranker.infer(rows) per batch --> logits scattered back to each request, in order

Tokenization runs on its own thread, so the rows of request n+1 are encoded while batch n
runs in ONNX Runtime (which releases the GIL). Rows from different requests share batches;
a request larger than one batch is split and reassembled. The queue is bounded: when it is
full, :class:`~crossrank.errors.Overloaded` is raised at once (the server answers 429). A
request past its deadline, or whose client left, is cancelled: its queued rows are dropped.
A batch that fails fails every request waiting on it.

The scheduler owns no tokenization or scoring logic: it calls the ``Reranker`` seams
``encode`` and ``infer`` and the ``scores`` helpers, so a served score equals the library's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossrank.encode import Encoder
from crossrank.errors import CrossrankError, DeadlineExceeded, InvalidInput, ModelError, Overloaded
from crossrank.rerank import LongDocuments, Reranker, Scores
from crossrank.scores import Activation, activate, max_per_owner
from crossrank.tokenize import EncodedRows, plan_batches

log = logging.getLogger(__name__)

#: called after each model call with (rows in the batch, tokens incl. padding, seconds)
BatchObserver = Callable[[int, int, float], None]


@dataclass(frozen=True)
class BatchSettings:
    """How a scheduler packs work.

    ``batch_size`` rows at most per model call and ``max_batch_tokens`` tokens counting
    padding (rows x longest row). ``window`` rows are looked at ahead of each packing and
    sorted by length, so similar lengths share a batch (less padding). ``max_queue`` bounds
    the pairs admitted and not finished; beyond it requests are refused (429). With
    ``batching=False`` a batch never mixes requests (for comparison and debugging).
    """

    batch_size: int = 32
    max_batch_tokens: int = 16384
    window: int = 256
    max_queue: int = 20000
    batching: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_batch_tokens < 1 or self.window < 1 or self.max_queue < 1:
            raise InvalidInput("batch_size, max_batch_tokens, window and max_queue must be at least 1")


class _Job:
    """One request's work: its rows, where their results go, and its cancellation flag."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.size = size  # admitted units (pairs or texts), returned to the queue budget at the end
        self.loop = loop
        self.future = future
        self.cancelled = False
        self.remaining = 0
        self.out: np.ndarray | None = None
        self.rows: EncodedRows | None = None
        self.texts: list[str] = []

    def resolve(self, value: Any) -> None:
        self.loop.call_soon_threadsafe(_set_result, self.future, value)

    def fail(self, exc: BaseException) -> None:
        self.cancelled = True
        self.loop.call_soon_threadsafe(_set_exception, self.future, exc)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@dataclass
class _Queue:
    """Admission control shared by both schedulers: a bound on units admitted, not finished."""

    capacity: int
    admitted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, size: int) -> None:
        with self.lock:
            # a request bigger than the whole queue still runs when it is alone
            if self.admitted and self.admitted + size > self.capacity:
                raise Overloaded(
                    f"the queue is full ({self.admitted} items waiting, capacity {self.capacity}); retry later"
                )
            self.admitted += size

    def release(self, size: int) -> None:
        with self.lock:
            self.admitted -= size


class _Base:
    def __init__(self, name: str, settings: BatchSettings, observer: BatchObserver | None) -> None:
        self.name = name
        self.settings = settings
        self.observer = observer
        self.queue = _Queue(settings.max_queue)
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"crossrank-infer-{name}", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        """Units (pairs or texts) admitted and not yet finished."""
        return self.queue.admitted

    def close(self) -> None:
        """Stop the inference thread; queued work is failed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout=30)

    async def _wait(self, job: _Job, deadline: float | None) -> Any:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except TimeoutError as exc:
            job.cancelled = True
            raise DeadlineExceeded("the request did not finish before its deadline and was cancelled") from exc
        except asyncio.CancelledError:
            job.cancelled = True  # the client went away: drop its queued work
            raise
        finally:
            self.queue.release(job.size)

    def _run(self) -> None:
        raise NotImplementedError


class CrossScheduler(_Base):
    """Batches (query, document) pairs of concurrent requests for one ``Reranker``.

    >>> scheduler = CrossScheduler("msmarco", reranker)  # doctest: +SKIP
    >>> result = await scheduler.score([("crocs", "Crocs Kids' Baya Clog")])  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        reranker: Reranker,
        settings: BatchSettings = BatchSettings(),
        *,
        observer: BatchObserver | None = None,
        tokenizer_threads: int = 1,
    ) -> None:
        self.reranker = reranker
        self._pending: deque[tuple[_Job, int]] = deque()  # (job, row index) in arrival order
        self._tokenize_pool = ThreadPoolExecutor(tokenizer_threads, thread_name_prefix=f"crossrank-tok-{name}")
        super().__init__(name, settings, observer)

    async def score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        activation: Activation | None = None,
        long_documents: LongDocuments | None = None,
        max_windows: int | None = None,
        deadline: float | None = None,
    ) -> Scores:
        """Scores of ``pairs`` in input order; ``deadline`` is a ``time.monotonic()`` instant."""
        act = activation or self.reranker.activation
        if not pairs:
            return Scores(np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool))
        if self._closed:
            raise Overloaded("the server is shutting down")
        self.queue.admit(len(pairs))
        loop = asyncio.get_running_loop()
        job = _Job(len(pairs), loop, loop.create_future())
        try:
            encoding = loop.run_in_executor(
                self._tokenize_pool,
                lambda: self.reranker.encode(pairs, long_documents=long_documents, max_windows=max_windows),
            )
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            rows: EncodedRows = await asyncio.wait_for(encoding, timeout)
        except TimeoutError as exc:
            self.queue.release(job.size)
            raise DeadlineExceeded("the request did not finish before its deadline and was cancelled") from exc
        except BaseException:
            self.queue.release(job.size)
            raise
        job.rows = rows
        job.out = np.empty(len(rows.ids), dtype=np.float64)
        job.remaining = len(rows.ids)
        with self._cond:
            self._pending.extend((job, i) for i in range(len(rows.ids)))
            self._cond.notify()
        logits = await self._wait(job, deadline)
        return Scores(activate(max_per_owner(logits, rows.owner, len(pairs)), act), rows.truncated)

    # -- the inference thread ------------------------------------------------------------------
    def _take_window(self) -> list[tuple[_Job, int]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                for job, _ in self._pending:
                    job.fail(Overloaded("the server is shutting down"))
                self._pending.clear()
                return None
            window: list[tuple[_Job, int]] = []
            first = self._pending[0][0]
            while self._pending and len(window) < self.settings.window:
                job, row = self._pending[0]
                if not self.settings.batching and job is not first:
                    break
                self._pending.popleft()
                if not job.cancelled:
                    window.append((job, row))
            return window

    def _run(self) -> None:
        while True:
            window = self._take_window()
            if window is None:
                return
            if not window:
                continue
            try:
                lengths = np.fromiter((len(job.rows.ids[row]) for job, row in window),  # type: ignore[union-attr]
                                      dtype=np.int64, count=len(window))
                for batch in plan_batches(lengths, self.settings.batch_size, self.settings.max_batch_tokens):
                    members = [window[i] for i in batch if not window[i][0].cancelled]
                    if members:
                        self._run_batch(members)
            except Exception:  # never leave a waiter hanging, whatever went wrong
                log.exception("the scheduler of model %s failed on a window of %d rows", self.name, len(window))
                for job in {id(job): job for job, _ in window}.values():
                    job.fail(ModelError("the scheduler failed on this request; see the server log"))

    def _run_batch(self, members: list[tuple[_Job, int]]) -> None:
        merged = EncodedRows(
            ids=[job.rows.ids[row] for job, row in members],  # type: ignore[union-attr]
            type_ids=[job.rows.type_ids[row] for job, row in members],  # type: ignore[union-attr]
            owner=np.arange(len(members)),
            truncated=np.zeros(len(members), dtype=bool),
        )
        started = time.perf_counter()
        try:
            logits = self.reranker.infer(merged)
        except Exception as exc:
            log.exception("inference failed for a batch of %d rows on model %s", len(members), self.name)
            error = exc if isinstance(exc, CrossrankError) else ModelError("inference failed on this batch")
            for job in {id(job): job for job, _ in members}.values():
                job.fail(error)
            return
        if self.observer is not None:
            width = int(merged.lengths.max())
            self.observer(len(members), width * len(members), time.perf_counter() - started)
        for (job, row), value in zip(members, logits):
            if job.cancelled:
                continue
            job.out[row] = value  # type: ignore[index]
            job.remaining -= 1
            if job.remaining == 0:
                job.resolve(job.out)

    def close(self) -> None:
        super().close()
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)


class EncoderScheduler(_Base):
    """Batches texts of concurrent embedding requests for one ``Encoder``.

    Waiting requests are concatenated (up to ``window`` texts) into one ``Encoder.embed``
    call, which tokenizes, length-sorts and batches them, and the rows are split back.
    """

    def __init__(
        self,
        name: str,
        encoder: Encoder,
        settings: BatchSettings = BatchSettings(),
        *,
        observer: BatchObserver | None = None,
    ) -> None:
        self.encoder = encoder
        self._jobs: deque[_Job] = deque()
        super().__init__(name, settings, observer)

    async def embed(self, texts: Sequence[str], *, deadline: float | None = None) -> np.ndarray:
        """Embeddings (float32, ``(len(texts), dim)``) in input order."""
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        if self._closed:
            raise Overloaded("the server is shutting down")
        self.queue.admit(len(texts))
        loop = asyncio.get_running_loop()
        job = _Job(len(texts), loop, loop.create_future())
        job.texts = list(texts)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
        result: np.ndarray = await self._wait(job, deadline)
        return result

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if self._closed:
                for job in self._jobs:
                    job.fail(Overloaded("the server is shutting down"))
                self._jobs.clear()
                return None
            taken: list[_Job] = []
            count = 0
            while self._jobs and (not taken or (self.settings.batching and count + self._jobs[0].size <= self.settings.window)):
                job = self._jobs.popleft()
                if not job.cancelled:
                    taken.append(job)
                    count += job.size
            return taken

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            started = time.perf_counter()
            try:
                vectors = self.encoder.embed(texts)
            except Exception as exc:
                log.exception("embedding failed for %d texts on model %s", len(texts), self.name)
                error = exc if isinstance(exc, CrossrankError) else ModelError("embedding failed on this batch")
                for job in jobs:
                    job.fail(error)
                continue
            if self.observer is not None:
                self.observer(len(texts), 0, time.perf_counter() - started)
            start = 0
            for job in jobs:
                job.resolve(vectors[start : start + job.size])
                start += job.size
