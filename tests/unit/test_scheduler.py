"""The dynamic-batching scheduler over a real Reranker whose model is a fake runtime.

The reranker's tokenizer, truncation and windows are real; its runtime is
:class:`fakes.FakeRuntime` (scores from token ids, exact whatever the batching), so the
scheduler's plumbing is what is tested. The model is wrapped only to hold a batch at a gate or
to make it fail, so that queueing, overload, deadlines and failure handling can be observed
without timing assumptions. The bi-encoder tests run the real tiny encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossrank import Encoder, Reranker
from crossrank.encode import TokenIds
from crossrank.errors import CrossrankError, DeadlineExceeded, InvalidInput, ModelError, Overloaded
from crossrank.options import LongDocuments, ScoreOptions
from crossrank.scheduler import BatchSettings, CrossScheduler, EncoderScheduler, PairScorer
from crossrank.scores import Scores
from crossrank.tokenize import TokenRows
from fakes import with_fake_runtime

QUERY = "crocs clog"
DOCS = [
    "Crocs Jibbitz 5-Pack Alien Shoe Charms",
    "Crocs Specialist Vent Work",
    "Crocs Kids' Baya Clog",
    "a long description of a leather boot that is nothing like a clog " * 3,
    "sandal",
    "",
    "Classic Clog in bone white, roomy fit, lightweight and comfortable for all day wear",
]


class GatedModel:
    """The real reranker (a :class:`PairScorer`), whose model calls can be held at a gate or made to fail."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker
        self.activation = reranker.activation
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False
        self.rows_seen = 0
        self.calls: list[list[tuple[int, ...]]] = []  # the rows of each model call, in order

    def instruction_for(self, requested: str | None) -> str | None:
        return self.reranker.instruction_for(requested)

    def details(self, values: np.ndarray, truncated: np.ndarray, opts: ScoreOptions) -> Scores:
        return self.reranker.details(values, truncated, opts)

    def tokenize(self, pairs: Sequence[tuple[str, str]], *, long_documents: LongDocuments | None = None,
                 max_windows: int | None = None, max_tokens: int | None = None,
                 instruction: str | None = None) -> TokenRows:
        return self.reranker.tokenize(pairs, long_documents=long_documents, max_windows=max_windows,
                                      max_tokens=max_tokens, instruction=instruction)

    def plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        return self.reranker.plan(lengths)

    def infer(self, rows: TokenRows, index: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(30)
        self.rows_seen += len(index)
        self.calls.append([tuple(rows.ids[i]) for i in index])
        if self.fail:
            raise RuntimeError("the model crashed")
        return self.reranker.infer(rows, index)


def run_until_done(calls: Sequence[Sequence[Any]], mine: Sequence[Any]) -> int:
    """How many rows (or texts) the model had run when the last of ``mine`` had run."""
    left = Counter(mine)
    total = 0
    for call in calls:
        total += len(call)
        for item in call:
            if left[item]:
                left[item] -= 1
        if not +left:
            return total
    raise AssertionError("some rows never ran")


def pairs_of(docs: Sequence[str], query: str = QUERY) -> list[tuple[str, str]]:
    return [(query, d) for d in docs]


def make(reranker: PairScorer, **settings: Any) -> tuple[CrossScheduler, list[tuple[int, int]]]:
    batches: list[tuple[int, int]] = []
    scheduler = CrossScheduler(
        "test", reranker, BatchSettings(**settings),
        observer=lambda rows, tokens, _s: batches.append((rows, tokens)),
    )
    return scheduler, batches


def test_concurrent_requests_get_their_own_scores_in_order(bert_dir: Path, model_cache: Path) -> None:
    fake_reranker = with_fake_runtime(Reranker(bert_dir, cache_dir=model_cache, batch_size=4), max_batch_tokens=200)
    scheduler, batches = make(fake_reranker)
    requests = [pairs_of(DOCS[i:] + DOCS[:i], query=f"query {i}") for i in range(len(DOCS))]
    requests.append(pairs_of(DOCS * 5))  # larger than one batch: split and reassembled
    requests.append([])

    async def main() -> list[Any]:
        return await asyncio.gather(*(scheduler.score(p) for p in requests))

    try:
        results = asyncio.run(main())
    finally:
        scheduler.close()
    for pairs, result in zip(requests, results):
        expected = fake_reranker.score_pairs(pairs) if pairs else np.zeros(0)
        np.testing.assert_allclose(result.values, expected, rtol=1e-6, atol=1e-9)
    assert batches and all(rows <= 4 and tokens <= 200 for rows, tokens in batches)
    assert scheduler.depth == 0


def test_raw_scores_and_windows_match_the_library(fake_reranker: Reranker) -> None:
    scheduler, _ = make(fake_reranker)
    long_doc = " ".join(f"word{i}" for i in range(900)) + " crocs clog"
    pairs = pairs_of([long_doc, *DOCS])

    async def main() -> list[Any]:
        return [
            await scheduler.score(pairs, activation="none"),
            await scheduler.score(pairs, long_documents="window", max_windows=8),
        ]

    try:
        raw, windowed = asyncio.run(main())
    finally:
        scheduler.close()
    np.testing.assert_allclose(raw.values, fake_reranker.score_pairs(pairs, activation="none"), rtol=1e-6)
    expected = fake_reranker.score_details(pairs, long_documents="window", max_windows=8)
    np.testing.assert_allclose(windowed.values, expected.values, rtol=1e-6)
    assert raw.truncated[0] and not raw.truncated[1:].any()


def _held_then_queued(model: GatedModel, scheduler: CrossScheduler, requests: list[list[tuple[str, str]]]) -> list[Any]:
    """Hold the first request's batch at the gate, queue the others behind it, then release."""

    async def main() -> list[Any]:
        model.gate.clear()
        first = asyncio.ensure_future(scheduler.score(requests[0]))
        await asyncio.to_thread(model.entered.wait, 30)
        rest = [asyncio.ensure_future(scheduler.score(p)) for p in requests[1:]]
        while scheduler.queued < sum(len(p) for p in requests[1:]):  # tokenized and queued
            await asyncio.sleep(0.01)
        model.gate.set()
        return list(await asyncio.gather(first, *rest))

    return asyncio.run(main())


@pytest.mark.parametrize("batching", [True, False])
def test_batches_mix_requests_only_when_batching_is_on(fake_reranker: Reranker, batching: bool) -> None:
    model = GatedModel(fake_reranker)
    scheduler, batches = make(model, batching=batching)
    requests = [pairs_of([d]) for d in DOCS[:5]]
    try:
        results = _held_then_queued(model, scheduler, requests)
    finally:
        scheduler.close()
    for pairs, result in zip(requests, results):
        np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs), rtol=1e-6)
    biggest = max(rows for rows, _ in batches)
    assert biggest == (4 if batching else 1)


def test_a_failing_batch_fails_every_waiter_and_the_scheduler_recovers(fake_reranker: Reranker) -> None:
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model)
    model.fail = True

    async def failing() -> list[Any]:
        return await asyncio.gather(*(scheduler.score(pairs_of(DOCS[:i + 1])) for i in range(4)),
                                    return_exceptions=True)

    async def after() -> Any:
        return await scheduler.score(pairs_of(DOCS))

    try:
        outcomes = asyncio.run(asyncio.wait_for(failing(), 60))
        assert all(isinstance(o, ModelError) for o in outcomes), outcomes
        assert "crashed" not in str(outcomes[0])  # no raw exception text
        model.fail = False
        result = asyncio.run(after())
    finally:
        scheduler.close()
    np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs_of(DOCS)), rtol=1e-6)
    assert scheduler.depth == 0


def test_a_full_queue_refuses_at_once_and_a_lone_big_request_still_runs(fake_reranker: Reranker) -> None:
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model, max_queue=5)

    async def main() -> tuple[Any, Any, Any]:
        model.gate.clear()
        first = asyncio.ensure_future(scheduler.score(pairs_of(DOCS[:3])))
        await asyncio.to_thread(model.entered.wait, 30)
        refused: Any = None
        try:
            await scheduler.score(pairs_of(DOCS[:3]))
        except Overloaded as exc:
            refused = exc
        model.gate.set()
        done = await first
        alone = await scheduler.score(pairs_of(DOCS))  # 7 > 5, but the queue is empty
        return refused, done, alone

    try:
        refused, done, alone = asyncio.run(main())
    finally:
        scheduler.close()
    assert isinstance(refused, Overloaded)
    assert len(done.values) == 3 and len(alone.values) == len(DOCS)
    assert scheduler.depth == 0


async def _raised_behind_a_held_call(
    model: GatedModel, first: Awaitable[Any], then: Awaitable[Any]
) -> tuple[asyncio.Future[Any], CrossrankError | None]:
    """Hold the model call of ``first`` at the gate and await ``then`` meanwhile; the held
    request (still gated) and the error ``then`` raised, if any."""
    model.gate.clear()
    held = asyncio.ensure_future(first)
    await asyncio.to_thread(model.entered.wait, 30)
    try:
        await then
    except CrossrankError as exc:
        return held, exc
    return held, None


def test_the_queue_counts_the_windows_a_document_is_cut_into(fake_reranker: Reranker) -> None:
    """One pair can become thousands of rows (a 592 kB document, `max_chunks_per_doc`); the queue
    bound used to count it as one. Its windows count once tokenized; alone it still runs."""
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model, max_queue=8)
    long_pair = [(QUERY, "crocs clog sandal boot leather " * 900)]  # far more than 8 windows
    assert len(fake_reranker.tokenize(long_pair, long_documents="window").ids) > 8

    async def main() -> tuple[Any, Any]:
        first, refused = await _raised_behind_a_held_call(
            model, scheduler.score(pairs_of(DOCS[:3])),
            scheduler.score(long_pair, long_documents="window"),  # 1 pair: admitted, then its rows
        )
        model.gate.set()
        await first
        alone = await scheduler.score(long_pair, long_documents="window")
        return refused, alone

    try:
        refused, alone = asyncio.run(main())
    finally:
        scheduler.close()
    assert isinstance(refused, Overloaded)
    expected = fake_reranker.score_details(long_pair, long_documents="window")
    np.testing.assert_allclose(alone.values, expected.values, rtol=1e-6)
    assert scheduler.depth == 0


def test_deadline_and_cancellation_drop_queued_work(fake_reranker: Reranker) -> None:
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model)

    async def main() -> tuple[Any, Any]:
        first, late = await _raised_behind_a_held_call(
            model, scheduler.score(pairs_of(DOCS[:1])),
            scheduler.score(pairs_of(DOCS), deadline=time.monotonic() + 0.2),
        )
        queued = scheduler.queued  # the expired rows, unless they expired while tokenizing
        gone = asyncio.ensure_future(scheduler.score(pairs_of(DOCS)))
        while scheduler.queued < queued + len(DOCS):  # these rows, queued
            await asyncio.sleep(0.01)
        gone.cancel()  # as the server does when the client disconnects
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        model.gate.set()
        return late, await first

    try:
        late, first = asyncio.run(main())
        after = asyncio.run(scheduler.score(pairs_of(DOCS[:2])))
    finally:
        scheduler.close()
    assert isinstance(late, DeadlineExceeded)
    assert len(first.values) == 1 and len(after.values) == 2
    assert model.rows_seen == 1 + 2  # the expired and the cancelled rows never reached the model
    assert scheduler.depth == 0


def test_encoder_scheduler_matches_the_encoder(minilm_encoder: Encoder) -> None:
    scheduler = EncoderScheduler("minilm", minilm_encoder, BatchSettings())
    requests = [DOCS[i:] for i in range(len(DOCS))] + [[]]

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(scheduler.embed(texts) for texts in requests)))

    try:
        results = asyncio.run(main())
    finally:
        scheduler.close()
    for texts, vectors in zip(requests, results):
        assert vectors.shape == (len(texts), minilm_encoder.dim)
        if texts:
            np.testing.assert_allclose(vectors, minilm_encoder.embed(texts), atol=1e-5)


def _queued_in_order_behind_a_held_call(
    gated: Any, scheduler: CrossScheduler | EncoderScheduler, submit: Callable[[Any], Awaitable[Any]],
    first: Any, requests: Sequence[Any],
) -> list[Any]:
    """Hold the model call of ``first`` at ``gated``'s gate, queue ``requests`` behind it one after
    the other (each request's rows or texts counted in the queue before the next is sent), then
    release; the requests' results."""

    async def main() -> list[Any]:
        gated.gate.clear()
        held = asyncio.ensure_future(submit(first))
        await asyncio.to_thread(gated.entered.wait, 30)
        tasks = []
        for request in requests:
            queued = scheduler.queued
            tasks.append(asyncio.ensure_future(submit(request)))
            while scheduler.queued < queued + len(request):  # tokenized and queued, in this order
                await asyncio.sleep(0.01)
        gated.gate.set()
        await held
        return list(await asyncio.gather(*tasks))

    try:
        return asyncio.run(main())
    finally:
        scheduler.close()


def _queued_in_order_behind_a_held_batch(
    model: GatedModel, scheduler: CrossScheduler, requests: dict[str, list[tuple[str, str]]]
) -> tuple[list[Any], dict[str, int]]:
    """The results of ``requests`` queued behind a held one-row batch, and how many rows the
    model had run when each was done (the requests' rows must differ from each other's)."""
    results = _queued_in_order_behind_a_held_call(
        model, scheduler, scheduler.score, pairs_of(DOCS[:1]), list(requests.values()))
    done = {name: run_until_done(model.calls, [tuple(ids) for ids in model.tokenize(pairs).ids])
            for name, pairs in requests.items()}
    return results, done


@pytest.mark.parametrize("batching", [True, False])
def test_a_large_request_does_not_hold_up_a_small_one_behind_it(fake_reranker: Reranker, batching: bool) -> None:
    """Rows used to be served first come, first served, so two documents sent just after
    6,000 titles waited 14-17 s for all of them. The shortest remaining work now goes first: the
    small request is done within the first window of 8 rows, not after the large one's 70."""
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model, batching=batching, lookahead=8)
    big, small = pairs_of(DOCS * 10, "crocs for sale"), pairs_of(DOCS[:2], "boots")
    results, rows_run_when_done = _queued_in_order_behind_a_held_batch(model, scheduler, {"big": big, "small": small})
    # the held batch and the first window (first come, first served: after all 70 rows of the large one)
    assert rows_run_when_done["small"] <= 1 + 8
    assert rows_run_when_done["big"] == 1 + len(big) + len(small)
    for pairs, result in zip((big, small), results):
        np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs), rtol=1e-6)


class GatedEncoder:
    """The real encoder (a :class:`TextEmbedder`), whose model calls can be held at a gate."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[tuple[int, ...]]] = []  # the rows of each model call, in order

    def tokenize(self, texts: Sequence[str] | TokenIds) -> TokenRows:
        return self.encoder.tokenize(texts)

    def plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        return self.encoder.plan(lengths)

    def infer(self, rows: TokenRows, index: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(30)
        self.calls.append([tuple(rows.ids[i]) for i in index])
        return self.encoder.infer(rows, index)


def test_a_large_embedding_request_does_not_hold_up_a_small_one(minilm_encoder: Encoder) -> None:
    encoder = GatedEncoder(minilm_encoder)
    scheduler = EncoderScheduler("minilm", encoder, BatchSettings(lookahead=8))
    big, small = DOCS * 10, ["boots", "rain boots"]
    results = _queued_in_order_behind_a_held_call(encoder, scheduler, scheduler.embed, DOCS[:1], [big, small])
    rows = {name: [tuple(ids) for ids in minilm_encoder.tokenize(texts).ids]
            for name, texts in (("big", big), ("small", small))}
    assert run_until_done(encoder.calls, rows["small"]) <= 1 + 8  # the held call and the first window
    assert run_until_done(encoder.calls, rows["big"]) == 1 + len(big) + len(small)
    for texts, vectors in zip((big, small), results):
        np.testing.assert_allclose(vectors, minilm_encoder.embed(texts), atol=1e-5)


def _arriving_during_a_held_batch(
    gated: Any, scheduler: CrossScheduler | EncoderScheduler, submit: Callable[[Any], Awaitable[Any]],
    big: Any, small: Any, window: int,
) -> list[Any]:
    """Hold the first model call of ``big`` at ``gated``'s gate, send ``small`` meanwhile and,
    once it is queued, release; the two results."""

    async def main() -> list[Any]:
        gated.gate.clear()
        tasks = [asyncio.ensure_future(submit(big))]
        await asyncio.to_thread(gated.entered.wait, 30)  # its first batch is running
        tasks.append(asyncio.ensure_future(submit(small)))
        while scheduler.queued < len(big) - window + len(small):
            await asyncio.sleep(0.01)
        gated.gate.set()
        return list(await asyncio.gather(*tasks))

    try:
        return asyncio.run(main())
    finally:
        scheduler.close()


def test_a_request_arriving_during_a_long_window_runs_at_the_next_batch(fake_reranker: Reranker) -> None:
    """A look-ahead window of long passages takes seconds (256 rows of 512 tokens: about 15 s
    here); a request that arrives meanwhile no longer waits for all of it. The window's
    unrun rows go back to their request, and the newcomer's rows run in the next batch."""
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model, lookahead=64)
    big, small = pairs_of(DOCS * 10), pairs_of(DOCS[:2], "boots")  # 70 rows: a window of 64, 16 batches
    results = _arriving_during_a_held_batch(model, scheduler, scheduler.score, big, small, 64)
    # the running batch and the next two (the newcomer's rows, if they differ in length);
    # without the hand-back, at least 64 + 2
    rows = {name: [tuple(ids) for ids in model.tokenize(pairs).ids] for name, pairs in (("big", big), ("small", small))}
    assert run_until_done(model.calls, rows["small"]) <= 3 * 4
    assert run_until_done(model.calls, rows["big"]) == len(big) + len(small)
    for pairs, result in zip((big, small), results):
        np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs), rtol=1e-6)


def test_a_request_arriving_during_a_batch_waits_for_one_runtime_batch(bert_dir: Path, model_cache: Path) -> None:
    """The look-ahead (here 64 rows) is run in the model's own batches (here 2 rows; on the CPU
    a few hundred tokens), and a request that arrives is considered between those. A small
    request sent while a windowed document ran waited 5.0-5.4 s for two scheduler batches of 32
    windows of 512 tokens; it now waits for one model batch."""
    model = GatedModel(with_fake_runtime(Reranker(bert_dir, batch_size=2, cache_dir=model_cache)))
    scheduler, _ = make(model, lookahead=64)
    big, small = pairs_of(DOCS * 10), pairs_of(DOCS[:2], "boots")
    results = _arriving_during_a_held_batch(model, scheduler, scheduler.score, big, small, 64)
    assert all(len(call) <= 2 for call in model.calls)  # the scheduler ran the runtime's batches
    rows = {name: [tuple(ids) for ids in model.tokenize(pairs).ids] for name, pairs in (("big", big), ("small", small))}
    # the running batch and the newcomer's (one or two, if its rows differ in length);
    # when the scheduler's batch ran as one call, at least 32 + 2
    assert run_until_done(model.calls, rows["small"]) <= 3 * 2
    assert run_until_done(model.calls, rows["big"]) == len(big) + len(small)
    for pairs, result in zip((big, small), results):
        np.testing.assert_allclose(result.values, model.reranker.score_pairs(pairs), rtol=1e-6)


def test_an_embedding_request_arriving_during_a_window_waits_for_one_encoder_batch(
    minilm_dir: Path, model_cache: Path
) -> None:
    """The embedding scheduler used to run its whole window (256 texts: about 1 s here) in one
    call; a small request sent during 10,000 texts waited 1.0-1.3 s. It now runs in the
    encoder's own batches, and a request that arrives is considered between them."""
    encoder = GatedEncoder(Encoder(minilm_dir, batch_size=2, cache_dir=model_cache))
    scheduler = EncoderScheduler("minilm", encoder, BatchSettings(lookahead=64))
    big, small = DOCS * 10, ["boots", "rain boots"]
    results = _arriving_during_a_held_batch(encoder, scheduler, scheduler.embed, big, small, 64)
    assert all(len(call) <= 2 for call in encoder.calls)
    rows = {name: [tuple(ids) for ids in encoder.tokenize(texts).ids]
            for name, texts in (("big", big), ("small", small))}
    assert run_until_done(encoder.calls, rows["small"]) <= 3 * 2  # without the hand-back, at least 64 + 2
    assert run_until_done(encoder.calls, rows["big"]) == len(big) + len(small)
    for texts, vectors in zip((big, small), results):
        np.testing.assert_allclose(vectors, encoder.encoder.embed(texts), atol=1e-5)


def test_requests_of_one_size_are_served_in_arrival_order(fake_reranker: Reranker) -> None:
    """Shortest-first must not turn into taking turns: with equal requests, taking turns would
    finish all of them late; serving them in order finishes the first one a third of the way."""
    model = GatedModel(fake_reranker)
    scheduler, _ = make(model, lookahead=8)
    requests = {name: pairs_of(DOCS * 3, f"crocs {name}") for name in "abc"}  # 21 rows each
    results, rows_run_when_done = _queued_in_order_behind_a_held_batch(model, scheduler, requests)
    assert rows_run_when_done["a"] <= 1 + 24  # its three windows
    assert rows_run_when_done["a"] <= rows_run_when_done["b"] <= rows_run_when_done["c"] == 1 + 63
    for pairs, result in zip(requests.values(), results):
        np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs), rtol=1e-6)


# -- one request's bad input fails that request alone -------------------------------------------
def _one_window_behind_held(
    gated: Any, scheduler: Any, submit: Callable[[Any], Awaitable[Any]], held: Any, requests: Sequence[Any], queued: int
) -> list[Any]:
    """Hold ``held``'s batch at the gate, queue ``requests`` behind it until ``queued`` rows wait
    (one shared window), release; each request's result or exception, in order."""

    async def main() -> list[Any]:
        gated.gate.clear()
        first = asyncio.ensure_future(submit(held))
        await asyncio.to_thread(gated.entered.wait, 30)
        tasks = [asyncio.ensure_future(submit(request)) for request in requests]
        while scheduler.queued < queued:
            await asyncio.sleep(0.01)
        gated.gate.set()
        await first
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    return asyncio.run(main())


def test_a_bad_text_fails_its_own_embedding_request_alone(minilm_encoder: Encoder) -> None:
    """A lone surrogate passed the server's check as raw UTF-8 and reached the encoder inside a
    window shared by other requests: 182 of 245 innocent /embed requests failed, with a message
    quoting another client's text. Each request's texts are now checked and tokenized alone."""
    encoder = GatedEncoder(minilm_encoder)
    scheduler = EncoderScheduler("minilm", encoder, BatchSettings(lookahead=64))
    requests = [[f"secret text of client {i}", "boots"] for i in range(5)]
    requests[2] = ["my own text", "half an emoji \ud800"]

    try:  # the good ones queued: one shared window
        results = _one_window_behind_held(encoder, scheduler, scheduler.embed, ["held"], requests, 2 * 4)
    finally:
        scheduler.close()
    bad = results.pop(2)
    assert isinstance(bad, InvalidInput), bad
    assert "documents[1]" in str(bad) and "secret" not in str(bad)
    for texts, vectors in zip(requests[:2] + requests[3:], results):
        np.testing.assert_allclose(vectors, minilm_encoder.embed(texts), atol=1e-5)
    assert scheduler.depth == 0


def test_a_bad_text_fails_its_own_rerank_request_alone(fake_reranker: Reranker) -> None:
    scheduler, _ = make(fake_reranker)
    requests = [pairs_of([f"secret document of client {i}", "boots"]) for i in range(4)]
    requests[1] = pairs_of(["my own document", "half an emoji \ud800"])

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(scheduler.score(p) for p in requests), return_exceptions=True))

    try:
        results = asyncio.run(main())
    finally:
        scheduler.close()
    bad = results.pop(1)
    assert isinstance(bad, InvalidInput), bad
    assert "pairs[1] document" in str(bad) and "secret" not in str(bad)
    for pairs, result in zip(requests[:1] + requests[2:], results):
        np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs), rtol=1e-6)


class PoisonedModel(GatedModel):
    """A model that fails on any batch holding one given row, with an error quoting it."""

    def __init__(self, reranker: Reranker, poison: tuple[str, str]) -> None:
        super().__init__(reranker)
        self.poison = tuple(reranker.tokenize([poison]).ids[0])

    def infer(self, rows: TokenRows, index: np.ndarray) -> np.ndarray:
        if any(tuple(rows.ids[i]) == self.poison for i in index):
            raise InvalidInput(f"this batch holds the text {self.poison}")
        return super().infer(rows, index)


def test_a_failing_shared_batch_fails_only_the_request_at_fault(fake_reranker: Reranker) -> None:
    """A batch that fails is run again one request at a time: the others succeed, and the one at
    fault gets its own error only (never one quoting another request's rows)."""
    poison = ("crocs clog", "the poisoned document")
    model = PoisonedModel(fake_reranker, poison)
    scheduler, _ = make(model)
    requests = [pairs_of(["Crocs Kids' Baya Clog", "boots"]), [poison, ("crocs clog", "sandal")],
                pairs_of(["leather boots", "sandal"])]

    try:  # all three tokenized and queued: one shared window
        results = _one_window_behind_held(model, scheduler, scheduler.score, pairs_of(DOCS[:1]), requests, 6)
    finally:
        scheduler.close()
    bad = results.pop(1)
    assert isinstance(bad, InvalidInput), bad
    for pairs, result in zip(requests[:1] + requests[2:], results):
        assert not isinstance(result, BaseException), result
        np.testing.assert_allclose(result.values, fake_reranker.score_pairs(pairs), rtol=1e-6)
    assert scheduler.depth == 0


def test_the_scheduler_checks_options_as_the_library_does(fake_reranker: Reranker) -> None:
    scheduler, _ = make(fake_reranker)
    try:
        for options, name in (({"max_windows": 0}, "max_windows"), ({"long_documents": "split"}, "long_documents"),
                              ({"max_tokens": -1}, "max_tokens")):
            with pytest.raises(InvalidInput, match=name):
                asyncio.run(scheduler.score(pairs_of(DOCS[:2]), **options))
    finally:
        scheduler.close()
    assert scheduler.depth == 0
