"""A small synthetic BEIR-format dataset with planted relevant documents.

Each query is three made-up topic words that no other query uses. For every query the corpus
holds documents that contain all three words twice (grade 2), two of them once (grade 1) and
one of them once (a judged decoy, grade 0); every other document is filler drawn from a
shared background vocabulary. Documents have the same length, so a lexical retriever ranks
grade 2 above grade 1 above decoys, and its metrics are known in advance: the ideal ranking.
Optionally one query has no relevant document at all (judged only with grade 0), which must
score 0 on every measure.

>>> info = write_synthetic_beir("/tmp/synthetic-beir")  # doctest: +SKIP
>>> info.ideal["nDCG@10"]  # doctest: +SKIP
0.9523809523809523
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from crossrank.errors import InvalidInput

_ONSETS = "b d f g k l m n p r s t v z".split()
_VOWELS = "a e i o u".split()
DOC_WORDS = 40  #: words per document body


@dataclass(frozen=True)
class SyntheticInfo:
    """What was written, and the metrics of a ranking that orders documents by grade."""

    path: Path
    documents: int
    queries: int
    no_relevant_query: str | None
    ideal: dict[str, float] = field(default_factory=dict)


def _words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((3, 4))))
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def write_synthetic_beir(
    path: str | Path,
    *,
    queries: int = 20,
    documents: int = 300,
    grade2_per_query: int = 2,
    grade1_per_query: int = 2,
    decoys_per_query: int = 2,
    no_relevant_query: bool = True,
    split: str = "test",
    seed: int = 13,
) -> SyntheticInfo:
    """Write ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv`` under ``path``."""
    planted = grade2_per_query + grade1_per_query + decoys_per_query
    if queries < 1 or documents < queries * planted + 1:
        raise InvalidInput(f"need at least {queries * planted + 1} documents for {queries} queries")
    rng = random.Random(seed)
    taken: set[str] = set()
    background = _words(rng, 400, taken)
    topics = [_words(rng, 3, taken) for _ in range(queries)]
    unused = _words(rng, 3, taken)  # the no-relevant query's words: in no document

    def body(required: list[str]) -> str:
        words = required + rng.choices(background, k=DOC_WORDS - len(required))
        rng.shuffle(words)
        return " ".join(words)

    corpus: list[dict[str, str]] = []
    qrels: dict[str, dict[str, int]] = {}
    for q, (a, b, c) in enumerate(topics):
        qid = f"q{q}"
        qrels[qid] = {}
        plan = (
            [(2, [a, a, b, b, c, c])] * grade2_per_query
            + [(1, rng.choice([[a, b], [a, c], [b, c]]))] * grade1_per_query
            + [(0, [rng.choice([a, b, c])])] * decoys_per_query
        )
        for i, (grade, required) in enumerate(plan):
            doc_id = f"d{q}-{i}"
            corpus.append({"_id": doc_id, "title": " ".join(rng.choices(background, k=3)), "text": body(list(required))})
            qrels[qid][doc_id] = grade
    for i in range(documents - len(corpus)):
        corpus.append({"_id": f"f{i}", "title": " ".join(rng.choices(background, k=3)), "text": body([])})
    rng.shuffle(corpus)

    query_rows = [{"_id": f"q{q}", "text": " ".join(words)} for q, words in enumerate(topics)]
    norel = None
    if no_relevant_query:
        norel = "q-none"
        query_rows.append({"_id": norel, "text": " ".join(unused)})
        qrels[norel] = {str(corpus[0]["_id"]): 0}

    root = Path(path)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({**doc, "metadata": {}}) + "\n" for doc in corpus)
    with open(root / "queries.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({**row, "metadata": {}}) + "\n" for row in query_rows)
    with open(root / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            handle.writelines(f"{qid}\t{doc}\t{grade}\n" for doc, grade in docs.items())

    # a ranking by grade: nDCG@10 and RR@10 are 1 on each query with a relevant document;
    # AP@100 and recall are capped when there are more relevant documents than the cut-off
    relevant = grade2_per_query + grade1_per_query
    share = queries / len(query_rows) if relevant else 0.0
    ideal = {
        "nDCG@10": share,
        "MRR@10": share,
        "MAP@100": share * min(100, relevant) / max(relevant, 1),
        "Recall@10": share * min(10, relevant) / max(relevant, 1),
        "Recall@100": share * min(100, relevant) / max(relevant, 1),
    }
    return SyntheticInfo(root, len(corpus), len(query_rows), norel, ideal)
