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

import os
import sys
from collections.abc import Iterator
from pathlib import Path
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


def read_pairs(parts: list[Path], workers: int, batch_rows: int) -> Any:
    """The spilled pairs, put into Ray's object store one part at a time (this process holds one
    part; the store spills to disk), in at least four blocks per worker so every actor gets work.

    No read task runs on the workers, so the parts need not be on storage they can read, and
    a pool of actors that holds every CPU cannot starve the reading."""
    import pandas as pd

    ray = _ray()
    per_part = -(-4 * workers // max(1, len(parts)))
    refs = []
    for part in parts:
        frame = pd.read_parquet(part)
        size = max(batch_rows, -(-len(frame) // per_part // batch_rows) * batch_rows)
        refs += [ray.put(frame.iloc[start:start + size]) for start in range(0, len(frame), size)]
    return ray.data.from_pandas_refs(refs)


def connect(address: str | None, workers: int) -> bool:
    """Join the cluster at ``address`` (or start a local one); True when this call started Ray."""
    if not address and "ray" not in sys.modules:
        # a cluster of this process alone listens on the loopback, not on the machine's network
        # address where anyone could submit work to it (read by Ray at import and by its node processes)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # a new cluster, never one found running on this machine (Ray joins that without "local")
        ray.init(address="local", num_cpus=workers, log_to_driver=False, include_dashboard=False)
    return True


def rerank_run_ray(
    job: Job, spec: RerankerSpec, *, address: str | None = None, workers: int = 2, batch_rows: int = BATCH_ROWS,
    scorer: type[PairScorer] = PairScorer,
) -> RerankRunReport:
    """``rerank-run`` with the pairs scored on Ray Data; the same output as the single-process path."""
    name = spec.prepare()  # the export, once, before the actors start
    started = connect(address, workers)
    ray = _ray()
    try:
        def score_parts(parts: list[Path]) -> Iterator[pd.DataFrame]:
            scored = score_dataset(read_pairs(parts, workers, batch_rows), spec, workers=workers, batch_rows=batch_rows,
                                   keep=("pos",), scorer=scorer)
            yield from scored.iter_batches(batch_format="pandas", batch_size=None)

        return run_on_engine(job, name, score_parts)
    finally:
        if started:
            ray.shutdown()
