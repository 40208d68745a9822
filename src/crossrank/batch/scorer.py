"""The pair scorer the data engines run: picklable, loads its model once, on first use.

Rows come as a pandas DataFrame with ``query`` and ``text`` columns (and any id columns, such
as ``qid``/``docid`` or ``id``); the answer keeps the id columns and adds ``score`` (float64)
and ``error`` (None, or why the row could not be scored). A bad row (a missing or non-string
query or text) is answered with its error and a NaN score; the other rows of its batch are
scored as usual. Pairs are scored in the order given, in the Reranker's own batches, so a
row's score does not depend on the engine that carried it beyond padding (within 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrank.errors import InvalidInput
from crossrank.texts import check_text

if TYPE_CHECKING:
    import pandas as pd

    from crossrank.rerank import Reranker

#: columns that name a row in error messages, when present
ID_COLUMNS = ("qid", "docid", "id")


@dataclass(frozen=True)
class RerankerSpec:
    """How to build the :class:`~crossrank.Reranker` on each worker: the model and its options.

    ``threads`` defaults to 1 on workers: an engine runs one scorer per CPU it grants.
    """

    model: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Reranker:
        from crossrank.rerank import Reranker

        options = dict(self.options)
        if options.get("threads") is None:
            options["threads"] = 1
        return Reranker(self.model, **options)

    def prepare(self) -> str:
        """Load (and export to ONNX, into the cache) once, here, before any worker starts;
        the workers then find the export in the cache. Returns the model's name."""
        from crossrank.rerank import Reranker

        options = dict(self.options)
        options["threads"] = 1
        reranker = Reranker(self.model, **options)
        return str(reranker.name)


def _row_error(query: Any, text: Any) -> str | None:
    try:
        check_text(query, "the query")
        if not isinstance(query, str) or not query.strip():
            return "the query is empty"
        if text is None or (isinstance(text, float) and math.isnan(text)):
            return "the text is missing"
        check_text(text, "the text")
    except InvalidInput as exc:
        return str(exc)
    return None


def _name_row(frame: pd.DataFrame, row: int) -> str:
    parts = [f"{column} {frame[column].iloc[row]!s}" for column in ID_COLUMNS if column in frame.columns]
    return ", ".join(parts) if parts else f"row {row}"


class PairScorer:
    """Callable over pandas batches; see the module's description.

    ``ds.map_batches(PairScorer, fn_constructor_kwargs={"spec": spec}, batch_format="pandas",
    concurrency=N)`` on Ray Data; ``df.mapInPandas(scorer.map_partitions, schema)`` on Spark.
    """

    def __init__(self, spec: RerankerSpec, keep: tuple[str, ...] = ()) -> None:
        self.spec = spec
        self.keep = tuple(keep)  #: extra columns carried through to the answer
        self._reranker: Reranker | None = None
        self.loads = 0  #: models this object loaded (1 once it has scored)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "keep": self.keep, "_reranker": None, "loads": 0}

    @property
    def reranker(self) -> Reranker:
        if self._reranker is None:
            self._reranker = self.spec.build()
            self.loads += 1
        return self._reranker

    def score_arrays(self, queries: Any, texts: Any) -> tuple[np.ndarray, list[str | None]]:
        """Scores (NaN for a bad row) and per-row errors for parallel query/text sequences."""
        errors = [_row_error(q, t) for q, t in zip(queries, texts)]
        good = [i for i, error in enumerate(errors) if error is None]
        scores = np.full(len(errors), np.nan, dtype=np.float64)
        if good:
            values = self.reranker.score_pairs([(queries[i], texts[i]) for i in good])
            scores[good] = np.asarray(values, dtype=np.float64)
        return scores, errors

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        for column in ("query", "text"):
            if column not in batch.columns:
                raise InvalidInput(f"the rows need a '{column}' column (they have {', '.join(batch.columns)})")
        queries, texts = batch["query"].tolist(), batch["text"].tolist()
        scores, errors = self.score_arrays(queries, texts)
        named = [f"{_name_row(batch, i)}: {error}" if error is not None else None for i, error in enumerate(errors)]
        columns = [c for c in (*ID_COLUMNS, *self.keep) if c in batch.columns]
        answer = pd.DataFrame({c: batch[c].to_numpy() for c in columns})
        answer["score"] = scores
        answer["error"] = pd.Series(named, dtype=object)
        return answer

    def map_partitions(self, batches: Any) -> Any:
        """Spark's ``mapInPandas`` form: an iterator of pandas batches in, one answer per batch out."""
        for batch in batches:
            yield self(batch)


def model_path(model: str | Path) -> str:
    """A model argument as the workers must see it: local directories made absolute."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else str(model)
