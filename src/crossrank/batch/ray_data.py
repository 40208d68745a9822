"""Batch reranking on Ray Data: ``ds.map_batches`` over a pool of actors that load the model once.

>>> import ray, crossrank.batch.ray_data as rd  # doctest: +SKIP
>>> spec = RerankerSpec("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
>>> scored = rd.score_dataset(ray.data.from_pandas(frame), spec, workers=4)  # doctest: +SKIP

The rows need ``query`` and ``text`` columns; id columns (``qid``, ``docid``, ``id``) travel
with them. Each actor builds its :class:`~crossrank.Reranker` on its first batch and keeps it;
the ONNX export is made once, by :meth:`RerankerSpec.prepare`, before the actors start. An actor
that dies is restarted and its batches are retried (Ray's actor restart and task retry).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from crossrank.batch.run import Job, run_on_engine
from crossrank.batch.scorer import PairScorer, RerankerSpec
from crossrank.evaluate.rerank_run import RerankRunReport
from crossrank.extras import require

if TYPE_CHECKING:
    import pandas as pd

#: rows per batch an actor scores (the Reranker splits it further into --batch-size model calls)
BATCH_ROWS = 256


def _ray() -> Any:
    return require("ray", "ray", "Reranking on Ray Data")


def score_dataset(
    dataset: Any, spec: RerankerSpec, *, workers: int = 2, batch_rows: int = BATCH_ROWS,
    cpus_per_worker: float = 1.0, keep: tuple[str, ...] = (), scorer: type[PairScorer] = PairScorer,
) -> Any:
    """``dataset`` with ``score`` and ``error`` columns (and its id columns), scored by
    ``workers`` actors; lazy, like any Ray dataset."""
    ray = _ray()
    return dataset.map_batches(
        scorer,
        fn_constructor_kwargs={"spec": spec, "keep": keep},
        batch_format="pandas",
        batch_size=batch_rows,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        max_restarts=-1,  # an actor that dies is started again...
        max_task_retries=-1,  # ...and the batches it held are retried
    )


def split(frames: list[pd.DataFrame], workers: int, batch_rows: int) -> list[pd.DataFrame]:
    """The rows in about four blocks per worker (whole batches), so that every actor gets work."""
    import pandas as pd

    rows = pd.concat(frames, ignore_index=True)
    size = max(batch_rows, -(-len(rows) // (4 * workers) // batch_rows) * batch_rows)
    return [rows.iloc[start:start + size] for start in range(0, len(rows), size)]


def connect(address: str | None, workers: int) -> bool:
    """Join the cluster at ``address`` (or start a local one); True when this call started Ray."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, log_to_driver=False, include_dashboard=False)
    return True


def rerank_run_ray(
    job: Job, spec: RerankerSpec, *, address: str | None = None, workers: int = 2, batch_rows: int = BATCH_ROWS,
    scorer: type[PairScorer] = PairScorer,
) -> RerankRunReport:
    """``rerank-run`` with the pairs scored on Ray Data; the same output as the single-process path."""
    ray = _ray()
    name = spec.prepare()  # the export, once, before the actors start
    started = connect(address, workers)
    try:
        def score_frames(frames: list[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            dataset = ray.data.from_pandas(split(frames, workers, batch_rows))
            scored = score_dataset(dataset, spec, workers=workers, batch_rows=batch_rows, keep=("pos",),
                                   scorer=scorer)
            yield from scored.iter_batches(batch_format="pandas", batch_size=None)

        return run_on_engine(job, name, score_frames)
    finally:
        if started:
            ray.shutdown()
