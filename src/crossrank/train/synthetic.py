"""A generated BEIR dataset with a signal a cross-encoder can learn and BM25 cannot see.

Each query names two topic words (real English words, so a real tokenizer cuts them as it
would real text). Its relevant document mentions them once, next to a word that confirms the
claim ("confirmed", "verified", ...); its hard negatives repeat them two or three times next to a
word that casts doubt ("rumored", "alleged", ...). BM25 counts words and ranks the hard
negatives first; a cross-encoder reads the pair and can learn that the confirming word is what
makes a document relevant. The rule is the same for every query, so what is learned on the
train queries carries over to held-out dev and test queries (disjoint topic words).

>>> write_learnable_beir("/tmp/learnable")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from crossrank.errors import InvalidInput

_TOPICS = (
    "apple river castle engine forest garden harbor island jacket kettle ladder mirror needle orchard pencil "
    "quarry rocket saddle tunnel violin wagon anchor barrel candle desert feather glacier hammer lantern meadow "
    "oyster pepper ribbon shovel tractor velvet walnut basket cactus dragon falcon guitar helmet igloo jungle "
    "koala lemon magnet napkin ocean parrot quilt radar salmon tiger turtle umbrella valley whistle yacht zebra "
    "bridge cabin dolphin eagle fountain goblet hornet ivory jasmine kayak lobster marble nickel onion pillow "
    "raven saffron temple tulip vessel walrus canyon comet crystal copper harp lotus mango pebble prism reef "
    "spider statue thunder timber torch vine wheat willow acorn badger bamboo beacon biscuit blanket bottle "
    "bucket button camera carpet cherry chimney cobra compass cotton cradle curtain diamond donkey drum "
    "emerald envelope ferry fiddle flute fossil garlic giraffe goose granite hatchet hazel honey iceberg "
    "jaguar jelly kitten lagoon lemur lettuce lizard llama lynx mantle meteor mitten moose mosaic nectar "
    "noodle nutmeg olive otter paddle panda parsley peacock pelican piano pigeon pirate plum pony puzzle "
    "rabbit raisin robin rudder satchel scarf sparrow squid sugar swan tablet teapot tiara tomato trumpet"
).split()
_FILLER = (
    "the a of and in on with for about from this that report story article note people city year time day "
    "work group local early later several many new old large small public general common"
).split()
CONFIRMING = ("confirmed", "verified", "official", "documented", "proven", "certified")
DOUBTING = ("rumored", "alleged", "unverified", "speculative", "disputed", "doubtful")


def _doc(rng: random.Random, words: list[str], length: int = 24) -> str:
    body = words + rng.choices(_FILLER, k=max(length - len(words), 0))
    rng.shuffle(body)
    return " ".join(body)


def write_learnable_beir(
    path: str | Path, *, train: int = 40, dev: int = 10, test: int = 15, hard_negatives: int = 3,
    filler_docs: int = 100, seed: int = 7,
) -> Path:
    """Write ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{train,dev,test}.tsv`` under ``path``."""
    total = train + dev + test
    if 2 * total > len(_TOPICS):
        raise InvalidInput(f"at most {len(_TOPICS) // 2} queries (two topic words each, none shared)")
    rng = random.Random(seed)
    topics = list(_TOPICS)
    rng.shuffle(topics)
    corpus: list[dict[str, str]] = []
    queries: list[dict[str, str]] = []
    splits = ["train"] * train + ["dev"] * dev + ["test"] * test
    qrels: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for q, split in enumerate(splits):
        a, b = topics[2 * q], topics[2 * q + 1]
        qid = f"q{q}"
        queries.append({"_id": qid, "text": f"{a} {b}"})
        relevant = f"d{q}-rel"
        corpus.append({"_id": relevant, "title": "", "text": _doc(rng, [a, b, rng.choice(CONFIRMING)])})
        qrels[split].append(f"{qid}\t{relevant}\t1")
        for n in range(hard_negatives):
            doc_id = f"d{q}-neg{n}"
            repeats = [a, b] * rng.choice((2, 3))
            corpus.append({"_id": doc_id, "title": "", "text": _doc(rng, repeats + [rng.choice(DOUBTING)])})
            if split == "train" and n == 0:
                qrels[split].append(f"{qid}\t{doc_id}\t0")  # one judged negative; the others must be mined
    for i in range(filler_docs):
        corpus.append({"_id": f"f{i}", "title": "", "text": _doc(rng, [rng.choice(CONFIRMING + DOUBTING)])})
    rng.shuffle(corpus)
    root = Path(path)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(doc) + "\n" for doc in corpus)
    with open(root / "queries.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in queries)
    for split, lines in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{x}\n" for x in lines))
    return root
