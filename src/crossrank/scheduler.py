"""Dynamic batching across concurrent requests: one scheduler per served model.

The path of a rerank request::

    score(pairs) --(tokenizer thread)--> EncodedRows --> queue of rows (bounded, in rows)
        --(inference thread)--> look-ahead window, filled shortest request first,
        sorted by length, packed by token budget, cut into the runtime's batches (Reranker.plan)
        --> Reranker.infer(rows) per batch --> logits scattered back to each request, in order

Tokenization runs on its own thread, so the rows of request n+1 are encoded while batch n
runs in ONNX Runtime (which releases the GIL). Rows from different requests share batches;
a request larger than one batch is split and reassembled. Windows are filled shortest
remaining work first, and a request that arrives while a window runs is considered at the
next model call: a request of thousands of rows no longer holds the small ones behind it until it
is done, while requests of one size are still served in arrival order. The queue is bounded:
when it is full, :class:`~crossrank.errors.Overloaded` is raised at once (429). A
request past its deadline, or whose client left, is cancelled: its queued rows are dropped.
A batch that fails fails every request waiting on it.

Each request's texts are checked and tokenized on their own, before they join a batch shared
with other requests: a bad text fails its request alone. If a shared batch still fails, each
request's rows are run again alone, so a request gets only its own error and never another
request's text. Each row carries its own prompt (an LLM reranker's instruction is tokenized into
it), so requests with different instructions share batches and each is scored with its own.

The scheduler owns no tokenization or scoring logic: it calls the ``Reranker`` seams
``encode``, ``plan`` and ``infer`` (the ``Encoder``'s ``encode``, ``plan`` and ``embed_rows``) and
the ``scores`` helpers, so a served score equals the library's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossrank.encode import Embedded, Encoder, TokenIds
from crossrank.errors import CrossrankError, DeadlineExceeded, InvalidInput, ModelError, Overloaded
from crossrank.memory import release_memory
from crossrank.options import check_options
from crossrank.rerank import LongDocuments, Reranker
from crossrank.scores import Activation, Scores, activate, max_per_owner
from crossrank.tokenize import EncodedRows, plan_batches

log = logging.getLogger(__name__)

#: seconds of idleness after work before freed memory is handed back (see ``release_memory``)
_IDLE_S = 1.0

#: called after each model call with (rows in the batch, tokens incl. padding, seconds)
BatchObserver = Callable[[int, int, float], None]


@dataclass(frozen=True)
class BatchSettings:
    """How a scheduler packs work.

    ``batch_size`` rows at most per model call and ``max_batch_tokens`` tokens counting
    padding (rows x longest row). ``window`` rows are looked at ahead of each packing and
    sorted by length, so similar lengths share a batch (less padding). ``max_queue`` bounds
    the pairs (or texts) admitted and not finished, counting each window of a document cut
    into windows; beyond it requests are refused (429). With
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
        self.size = size  # admitted units (pairs or texts, then rows), returned to the queue budget at the end
        self.loop = loop
        self.future = future
        self.cancelled = False
        self.units = 0  # rows (or texts) to run
        self.taken = 0  # units handed to the inference thread, in order
        self.returned: list[int] = []  # units handed over and given back unrun, run first
        self.waiting = False  # in the scheduler's list of jobs with units to hand over
        self.arrival = 0  # the scheduler's count of jobs queued before this one
        self.remaining = 0
        self.out: np.ndarray | None = None
        self.rows: EncodedRows | None = None

    @property
    def pending(self) -> int:
        """Units not handed to the inference thread (or given back)."""
        return self.units - self.taken + len(self.returned)

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

    def admit(self, size: int, held: int = 0) -> None:
        """Admit ``size`` more units for a request that holds ``held`` already, or refuse."""
        with self.lock:
            # a request bigger than the whole queue still runs when it is alone
            if self.admitted > held and self.admitted + size > self.capacity:
                raise Overloaded(
                    f"the queue is full ({self.admitted} items waiting, capacity {self.capacity}); retry later"
                )
            self.admitted += size

    def release(self, size: int) -> None:
        with self.lock:
            self.admitted -= size


class _Base:
    def __init__(self, name: str, settings: BatchSettings, observer: BatchObserver | None,
                 tokenizer_threads: int = 1) -> None:
        self._tokenize_pool = ThreadPoolExecutor(tokenizer_threads, thread_name_prefix=f"crossrank-tok-{name}")
        self.name = name
        self.settings = settings
        self.observer = observer
        self.queue = _Queue(settings.max_queue)
        self._jobs: list[_Job] = []  # jobs with units to hand to the inference thread
        self._arrivals = 0
        self._arrived = False  # a job was queued since the last window was taken
        self._worked = False  # work was taken since the thread was last idle
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"crossrank-infer-{name}", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        """Units (pairs or texts) admitted and not yet finished."""
        return self.queue.admitted

    @property
    def queued(self) -> int:
        """Units (rows or texts) waiting for the inference thread."""
        with self._cond:
            return sum(job.pending for job in self._jobs if not job.cancelled)

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            self._arrivals += 1
            job.arrival = self._arrivals
            job.waiting = True
            self._jobs.append(job)
            self._arrived = True
            self._cond.notify()

    def _take(self) -> list[tuple[_Job, list[int]]] | None:
        """The next look-ahead window, as (job, units) pieces; None once closed.

        Shortest remaining work first: the jobs with the fewest units left fill the window
        first (earliest arrival first among equals). Requests of one size are then served
        in arrival order, and a small request does not wait behind a large one; a large
        request runs when no smaller work waits (under overload, until its deadline).
        Without batching a window holds one job's units.
        """
        with self._cond:
            while not self._jobs and not self._closed:
                if not self._cond.wait(_IDLE_S if self._worked else None) and self._worked:
                    self._worked = False
                    self._cond.release()  # newcomers queue meanwhile
                    try:
                        release_memory()  # idle after work: give freed memory back to the system
                    finally:
                        self._cond.acquire()
            self._worked = True
            if self._closed:
                for job in self._jobs:
                    job.fail(Overloaded("the server is shutting down"))
                self._jobs.clear()
                return None
            self._arrived = False
            self._jobs.sort(key=lambda job: (job.pending, job.arrival))
            pieces: list[tuple[_Job, list[int]]] = []
            count = 0
            for job in self._jobs:
                if count >= self.settings.window:
                    break
                if job.cancelled:
                    continue
                share = self.settings.window - count
                units, job.returned = job.returned[:share], job.returned[share:]
                end = min(job.units, job.taken + share - len(units))
                units.extend(range(job.taken, end))
                job.taken = end
                pieces.append((job, units))
                count += len(units)
                if not self.settings.batching:
                    break
            for job in self._jobs:
                job.waiting = job.pending > 0 and not job.cancelled
            self._jobs = [job for job in self._jobs if job.waiting]
            return pieces

    def _give_back(self, pieces: Sequence[tuple[_Job, int]]) -> None:
        """Return taken, unrun units to their jobs; they run first at the job's next window."""
        with self._cond:
            for job, unit in pieces:
                if job.cancelled:
                    continue
                job.returned.append(unit)
                if not job.waiting:
                    job.waiting = True
                    self._jobs.append(job)

    def close(self) -> None:
        """Stop the inference thread; queued work is failed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout=30)
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)

    async def _submit(self, count: int, encode: Callable[[], EncodedRows], deadline: float | None) -> tuple[_Job, Any]:
        """Admit a request of ``count`` units, check and tokenize it on its own (``encode``, on
        the tokenizer thread), admit its extra rows, queue them; (its job, its results)."""
        if self._closed:
            raise Overloaded("the server is shutting down")
        self.queue.admit(count)
        loop = asyncio.get_running_loop()
        job = _Job(count, loop, loop.create_future())
        try:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            rows: EncodedRows = await asyncio.wait_for(loop.run_in_executor(self._tokenize_pool, encode), timeout)
        except TimeoutError as exc:
            self.queue.release(job.size)
            raise DeadlineExceeded("the request did not finish before its deadline and was cancelled") from exc
        except BaseException:
            self.queue.release(job.size)
            raise
        extra = len(rows.ids) - count  # documents cut into windows: the queue counts rows
        if extra > 0:
            try:
                self.queue.admit(extra, held=job.size)
            except Overloaded:
                self.queue.release(job.size)
                raise
            job.size += extra
        job.rows = rows
        job.units = job.remaining = len(rows.ids)
        job.out = self._output(len(rows.ids))
        self._enqueue(job)
        return job, await self._wait(job, deadline)

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

    # -- the inference thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            pieces = self._take()
            if pieces is None:
                return
            window = [(job, unit) for job, units in pieces for unit in units]
            if not window:
                continue
            try:
                rows = self._rows(window)
                lengths = rows.lengths
                # the scheduler's bounds, then the model's own batches (on the CPU a few hundred
                # tokens each): a request that arrives waits for one of those, not for a whole
                # batch of the scheduler's (32 windows of 512 tokens: 2 s here)
                batches = [
                    batch[part]
                    for batch in plan_batches(lengths, self.settings.batch_size, self.settings.max_batch_tokens)
                    for part in self._plan(lengths[batch])
                ]
                batches.sort(key=lambda batch: int(batch.min()))  # the first jobs' units first
                for done, batch in enumerate(batches):
                    if done and self._arrived and self.settings.batching:
                        # a request came in: if it is smaller, it goes first, not after this window
                        self._give_back([window[i] for rest in batches[done:] for i in rest])
                        break
                    live = np.fromiter((i for i in batch if not window[i][0].cancelled), dtype=np.int64)
                    if len(live):
                        self._run_batch(rows, live, window)
            except Exception as exc:  # never leave a waiter hanging, whatever went wrong
                log.exception("the scheduler of model %s failed on a window of %d rows", self.name, len(window))
                jobs = list({id(job): job for job, _ in window}.values())
                for job in jobs:
                    job.fail(_own_error(exc, len(jobs), "the scheduler failed on this request; see the server log"))

    def _run_batch(self, rows: EncodedRows, batch: np.ndarray, window: list[tuple[_Job, int]]) -> None:
        """Run the model on ``rows[batch]`` and hand each result to its job."""
        started = time.perf_counter()
        try:
            results = self._call(rows, batch)
        except Exception as exc:
            jobs = list({id(window[i][0]): window[i][0] for i in batch}.values())
            if len(jobs) > 1:  # each request's rows alone: one request's fault fails it alone
                log.warning("a batch of %d requests failed on model %s; running each alone", len(jobs), self.name)
                for job in jobs:
                    self._run_batch(rows, np.fromiter((i for i in batch if window[i][0] is job), dtype=np.int64),
                                    window)
                return
            log.exception("inference failed for a batch of %d rows on model %s", len(batch), self.name)
            jobs[0].fail(_own_error(exc, 1, "inference failed on this batch"))
            return
        if self.observer is not None:
            self.observer(len(batch), int(rows.lengths[batch].max()) * len(batch), time.perf_counter() - started)
        for i, value in zip(batch, results):
            job, unit = window[i]
            if job.cancelled:
                continue
            job.out[unit] = value
            job.remaining -= 1
            if job.remaining == 0:
                job.resolve(job.out)

    def _rows(self, window: list[tuple[_Job, int]]) -> EncodedRows:
        """The window's units as tokenized rows, in window order."""
        return EncodedRows(
            ids=[job.rows.ids[row] for job, row in window],  # type: ignore[union-attr]
            type_ids=[job.rows.type_ids[row] for job, row in window],  # type: ignore[union-attr]
            owner=np.arange(len(window)),
            truncated=np.zeros(len(window), dtype=bool),
        )

    def _output(self, rows: int) -> np.ndarray:
        """Where a request's results for ``rows`` rows go."""
        raise NotImplementedError

    def _plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        """The model's own batches for rows of these lengths."""
        raise NotImplementedError

    def _call(self, rows: EncodedRows, batch: np.ndarray) -> np.ndarray:
        """The model's results for ``rows[batch]``, one per row."""
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
        super().__init__(name, settings, observer, tokenizer_threads)

    async def score(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        activation: Activation | None = None,
        long_documents: LongDocuments | None = None,
        max_windows: int | None = None,
        max_tokens: int | None = None,
        instruction: str | None = None,
        deadline: float | None = None,
    ) -> Scores:
        """Scores of ``pairs`` in input order; ``deadline`` is a ``time.monotonic()`` instant.

        The options are the ``Reranker``'s (see :meth:`Reranker.score_details`); an instruction
        the model cannot use is refused here, before the request is queued."""
        opts = check_options(activation=activation, long_documents=long_documents, max_windows=max_windows,
                             max_tokens=max_tokens, instruction=instruction)
        self.reranker.instruction_for(opts.instruction)
        act = opts.activation or self.reranker.activation
        if not pairs:
            return self.reranker.details(np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool), opts)

        def encode() -> EncodedRows:
            return self.reranker.encode(pairs, long_documents=opts.long_documents, max_windows=opts.max_windows,
                                        max_tokens=opts.max_tokens, instruction=opts.instruction)

        job, logits = await self._submit(len(pairs), encode, deadline)
        rows = job.rows
        assert rows is not None
        return self.reranker.details(activate(max_per_owner(logits, rows.owner, len(pairs)), act), rows.truncated,
                                     opts)

    # -- the inference thread's calls ----------------------------------------------------------
    def _output(self, rows: int) -> np.ndarray:
        return np.empty(rows, dtype=np.float64)

    def _plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        return self.reranker.plan(lengths)

    def _call(self, rows: EncodedRows, batch: np.ndarray) -> np.ndarray:
        return self.reranker.infer(rows, batch)


class EncoderScheduler(_Base):
    """Batches texts of concurrent embedding requests for one ``Encoder``.

    Each request's texts are checked and tokenized on the tokenizer thread; waiting requests,
    shortest first, fill a window of up to ``window`` texts, which are length-sorted and run
    in the encoder's batches; a request that arrives meanwhile is considered between batches,
    as for the cross-encoder. The rows are split back to their requests.
    """

    def __init__(
        self,
        name: str,
        encoder: Encoder,
        settings: BatchSettings = BatchSettings(),
        *,
        observer: BatchObserver | None = None,
        tokenizer_threads: int = 1,
    ) -> None:
        self.encoder = encoder
        super().__init__(name, settings, observer, tokenizer_threads)

    async def embed(self, texts: Sequence[str], *, deadline: float | None = None) -> np.ndarray:
        """Embeddings (float32, ``(len(texts), dim)``) in input order."""
        return (await self.embed_details(texts, deadline=deadline)).vectors

    async def embed_details(self, inputs: Sequence[str] | TokenIds, *, deadline: float | None = None) -> Embedded:
        """Embeddings of texts (or token ids) in input order, with the tokens each one took
        (counted from the rows the model ran, so nothing is tokenized twice)."""
        if not len(inputs):
            return Embedded(np.zeros((0, self.encoder.dim), dtype=np.float32), np.zeros(0, dtype=np.int64),
                            np.zeros(0, dtype=bool))
        job, vectors = await self._submit(len(inputs), lambda: self.encoder.encode(inputs), deadline)
        assert job.rows is not None
        return Embedded.of(job.rows, vectors)

    # -- the inference thread's calls ----------------------------------------------------------
    def _output(self, rows: int) -> np.ndarray:
        return np.empty((rows, self.encoder.dim), dtype=np.float32)

    def _plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        return self.encoder.plan(lengths)

    def _call(self, rows: EncodedRows, batch: np.ndarray) -> np.ndarray:
        return self.encoder.embed_rows(rows, batch)


def _own_error(exc: Exception, requests: int, generic: str) -> CrossrankError:
    """The error to give one of ``requests`` requests hit by ``exc``: crossrank's own error when
    it is that request's alone, else ``generic`` (an error's text may hold another's data)."""
    if isinstance(exc, CrossrankError) and requests == 1:
        return exc
    return ModelError(generic)
