"""Training data: a BEIR-format directory (train and dev qrels) or JSONL of ``{query, positive[, negatives]}``.

Everything is checked before any model is loaded or any step is trained: qrels that name
queries or documents the dataset does not have, an empty split, a split without a single
relevant judgement, and a dev split that shares queries with the train split are refused
with their counts and a few of the offending ids. JSONL input is written out as a BEIR
directory first, so that one code path (index, mining, dev evaluation) serves both.

>>> data = load_training_data("my-beir-dir", train_split="train", dev_split="dev")  # doctest: +SKIP
>>> data.train_queries, data.dev_queries  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.evaluate.beir import BeirDataset
from crossrank.evaluate.lines import text_lines

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]
SHOWN = 5  #: offending ids named in an error message


@dataclass
class TrainingData:
    """A checked dataset: the texts training needs, the train and dev judgements."""

    dataset: BeirDataset
    train: Qrels  #: query id -> document id -> grade (only queries with a relevant document)
    dev: Qrels | None
    queries: dict[str, str]  #: text of every train and dev query
    texts: dict[str, str]  #: text of every judged document
    documents: int  #: documents in the corpus
    skipped_queries: list[str] = field(default_factory=list)  #: train queries without a relevant judgement

    @property
    def max_grade(self) -> int:
        return max(g for docs in self.train.values() for g in docs.values())

    def positives(self, qid: str) -> list[str]:
        return [doc for doc, grade in self.train[qid].items() if grade >= 1]

    def counts(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset.root),
            "documents": self.documents,
            "train_queries": len(self.train),
            "train_positives": sum(len(self.positives(q)) for q in self.train),
            "train_judged_negatives": sum(1 for d in self.train.values() for g in d.values() if g < 1),
            "train_queries_without_positive": len(self.skipped_queries),
            "dev_queries": len(self.dev) if self.dev is not None else 0,
            "grades": sorted({g for d in self.train.values() for g in d.values()}),
        }


def _few(ids: list[str] | set[str]) -> str:
    shown = sorted(ids)[:SHOWN]
    return ", ".join(shown) + (", ..." if len(ids) > SHOWN else "")


def _split(data: BeirDataset, split: str, role: str) -> Qrels:
    path = data.qrels_dir / f"{split}.tsv"
    if not path.is_file():
        raise InvalidInput(
            f"{data.root} has no {role} split {split!r} (qrels/{split}.tsv; available: "
            f"{', '.join(data.splits()) or 'none'})"
            + ("; pass --dev-split none to train without dev evaluation (no early stopping)" if role == "dev" else "")
        )
    try:
        return data.qrels(split)
    except InvalidInput as exc:
        if "no judgements" in str(exc):
            raise InvalidInput(f"the {role} split {split!r} is empty: {path} has no judgements") from None
        raise


def load_training_data(path: str | Path, *, train_split: str = "train", dev_split: str | None = "dev") -> TrainingData:
    """Read and check a BEIR-format directory; see the module docstring for what is refused."""
    data = BeirDataset.open(path)
    train = _split(data, train_split, "train")
    dev = _split(data, dev_split, "dev") if dev_split else None
    problems: list[str] = []
    if dev is not None:
        overlap = train.keys() & dev.keys()
        if overlap:
            problems.append(f"{len(overlap)} of {len(dev)} dev queries are also in the train split "
                            f"({_few(overlap)}): the dev figures would not measure held-out queries")
    queries = {qid: text for qid, text in data.queries().items()}
    judged_queries = set(train) | set(dev or {})
    unknown_queries = judged_queries - queries.keys()
    if unknown_queries:
        problems.append(f"{len(unknown_queries)} judged queries are not in {data.queries_path.name} "
                        f"({_few(unknown_queries)})")
    judged_docs = {doc for qrels in (train, dev or {}) for docs in qrels.values() for doc in docs}
    texts: dict[str, str] = {}
    documents = 0
    for record in data.records():
        documents += 1
        if record.id in judged_docs:
            texts[record.id] = record.text
    unknown_docs = judged_docs - texts.keys()
    if unknown_docs:
        pairs = sum(1 for qrels in (train, dev or {}) for docs in qrels.values() for d in docs if d in unknown_docs)
        problems.append(f"{len(unknown_docs)} judged documents are not in {data.corpus_path.name} "
                        f"({pairs} judgements name them: {_few(unknown_docs)})")
    if problems:
        raise InvalidInput(f"{data.root}: cannot train on this data:\n  - " + "\n  - ".join(problems))
    skipped = sorted(q for q, docs in train.items() if not any(g >= 1 for g in docs.values()))
    kept = {q: docs for q, docs in train.items() if q not in skipped}
    if not kept:
        raise InvalidInput(f"the train split {train_split!r} has no relevant judgement (grade >= 1) in any of its "
                           f"{len(train)} queries: there is nothing to learn from")
    if dev is not None and not any(g >= 1 for docs in dev.values() for g in docs.values()):
        raise InvalidInput(f"the dev split {dev_split!r} has no relevant judgement (grade >= 1): nDCG@10 would be 0")
    if skipped:
        log.warning("%d train queries have no relevant judgement and are left out", len(skipped))
    wanted = set(kept) | set(dev or {})
    return TrainingData(data, kept, dev, {q: queries[q] for q in wanted}, texts, documents, skipped)


# -- JSONL -> BEIR ------------------------------------------------------------------------------------
def _jsonl_rows(path: Path) -> list[tuple[str, list[str], list[str]]]:
    rows = []
    for number, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise InvalidInput(f"{where}: expected an object {{query, positive[, negatives]}}")
        query = record.get("query")
        positive = record.get("positive", record.get("positives"))
        negatives = record.get("negatives", [])
        positives = [positive] if isinstance(positive, str) else positive
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput(f"{where}: 'query' must be a non-empty string")
        for name, value in (("positive", positives), ("negatives", negatives)):
            if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
                raise InvalidInput(f"{where}: {name!r} must be a non-empty string or a list of them")
        if not positives:
            raise InvalidInput(f"{where}: 'positive' is missing")
        rows.append((query, list(positives), list(negatives)))
    if not rows:
        raise InvalidInput(f"{path} holds no training example")
    return rows


def jsonl_to_beir(train: str | Path, dev: str | Path | None, target: str | Path) -> Path:
    """Write JSONL examples as a BEIR directory (``qrels/train.tsv``, ``qrels/dev.tsv``) at ``target``.

    Identical query texts share one query id and identical passages one document id, so a
    dev query that repeats a train query is caught as an overlap. Given negatives are judged
    grade 0; the corpus is every passage of both files (mining searches it).
    """
    splits = {"train": _jsonl_rows(Path(train))}
    if dev is not None:
        splits["dev"] = _jsonl_rows(Path(dev))
    query_ids: dict[str, str] = {}
    doc_ids: dict[str, str] = {}
    qrels: dict[str, list[tuple[str, str, int]]] = {}
    for split, rows in splits.items():
        judged = qrels.setdefault(split, [])
        for query, positives, negatives in rows:
            qid = query_ids.setdefault(query, f"q{len(query_ids)}")
            for grade, texts in ((1, positives), (0, negatives)):
                for text in texts:
                    judged.append((qid, doc_ids.setdefault(text, f"d{len(doc_ids)}"), grade))
    root = Path(target)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for t, i in doc_ids.items())
    with open(root / "queries.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"_id": i, "text": t}) + "\n" for t, i in query_ids.items())
    for split, judged in qrels.items():
        best: dict[tuple[str, str], int] = {}
        for qid, doc, grade in judged:
            best[(qid, doc)] = max(grade, best.get((qid, doc), grade))
        with open(root / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            handle.writelines(f"{q}\t{d}\t{g}\n" for (q, d), g in best.items())
    return root
