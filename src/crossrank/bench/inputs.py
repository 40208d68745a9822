"""Deterministic benchmark inputs: one query and N documents, titles or passages.

The words come from a fixed list of common English words and the choice from a seeded
generator, so every run (and every backend in one run) scores exactly the same text without
downloading anything. With a BERT uncased vocabulary a title of 15 words is about 20 tokens
and a passage of 150 words about 190 tokens, close to product titles and MS MARCO passages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["titles", "passages"]
#: words per document of each kind (the Metarank table's shapes)
WORDS: dict[str, int] = {"titles": 15, "passages": 150}

_VOCABULARY = """
the of and to in is was for on with as by at from that this which be are or an it his her
their new first time year people world city state school water music house family game
water light price size color black white red blue green leather cotton shoes boots clogs
sandals sneakers running walking comfort kids women men classic original soft strong
history army war king queen river mountain island north south east west century empire
search engine ranking model query document passage relevance score retrieval learning
neural network language text data system method result study research paper evaluation
market company product service customer order delivery shipping return warranty quality
coffee tea bread cheese fruit apple orange garden kitchen table chair window door road car
train station airport hotel travel summer winter spring autumn weather rain snow sun moon
doctor health hospital medicine disease treatment patient heart brain blood body care
computer software hardware memory processor battery screen phone camera video picture
book story author novel poem chapter library reading writing letter word sentence line
team player match season league goal coach stadium fans win lose draw record champion
""".split()


@dataclass(frozen=True)
class Workload:
    """One benchmark input: a query and its candidate documents."""

    kind: str
    query: str
    documents: list[str]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(self.query, doc) for doc in self.documents]


def make_workload(kind: Kind, n: int, *, seed: int = 0) -> Workload:
    """``n`` documents of ``kind`` ("titles" ~15 words, "passages" ~150 words) and a query.

    Document lengths vary by +-20 % around the nominal length, as real candidates do, so
    that padding and length bucketing are exercised as in production.
    """
    if kind not in WORDS:
        raise ValueError(f"kind must be one of {sorted(WORDS)}, got {kind!r}")
    rng = np.random.default_rng([seed, n, 0 if kind == "titles" else 1])
    vocab = np.asarray(_VOCABULARY)
    query = " ".join(rng.choice(vocab, size=6))
    nominal = WORDS[kind]
    docs = []
    for _ in range(n):
        length = int(rng.integers(int(nominal * 0.8), int(nominal * 1.2) + 1))
        docs.append(" ".join(rng.choice(vocab, size=length)))
    return Workload(kind, query, docs)


#: seeds of the calibration pairs: far from the timed workloads' (0 up) and the fidelity runs' (100 up)
CALIBRATION_SEED = 5000


def calibration_pairs(queries: int = 16, documents: int = 20) -> list[tuple[str, str]]:
    """Pairs for the int8 mode to calibrate on in a benchmark: ``queries`` of each kind with ``documents`` each,
    from seeds no timed or judged workload uses (16 per kind: 6 queries held out to judge the ranking on)."""
    return [pair for kind in ("titles", "passages") for seed in range(queries)
            for pair in make_workload(kind, documents, seed=CALIBRATION_SEED + seed).pairs]
