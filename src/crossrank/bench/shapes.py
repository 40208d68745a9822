"""The model shapes ``crossrank bench --shape`` builds: the architecture of a catalogued
reranker with random weights, built once and cached.

Random weights cost exactly the compute of the trained model, so the speed measured is the
real model's (the scores mean nothing). The vocabularies are the small test tokenizers'
(a few hundred to 30k tokens): an embedding lookup costs the same whatever the table's size,
and the LLM head is one row either way, so only the file size differs from the hub model.

Each shape names the hub model it stands for and the head it runs through:

======================  ==============================================  =====================
shape                   stands for                                      head
======================  ==============================================  =====================
minilm-l6               cross-encoder/ms-marco-MiniLM-L6-v2             sequence-classification
ettin-17m, ettin-68m    the Ettin rerankers (ModernBERT body)           st-modules
gte-modernbert-base     Alibaba-NLP/gte-reranker-modernbert-base        sequence-classification
bge-reranker-v2-m3      BAAI/bge-reranker-v2-m3 (XLM-RoBERTa large)     sequence-classification
qwen3-reranker-0.6b     Qwen/Qwen3-Reranker-0.6B                        llm-yes-no
======================  ==============================================  =====================
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidInput

log = logging.getLogger(__name__)
#: the file that marks a model directory as random-weight (its scores mean nothing)
RANDOM_WEIGHTS = "RANDOM_WEIGHTS"


def _modernbert(layers: int, hidden: int, intermediate: int, heads: int) -> dict[str, Any]:
    """A ModernBERT body of the given size with ModernBERT's own attention pattern."""
    return {"layers": layers, "hidden_size": hidden, "intermediate_size": intermediate, "num_attention_heads": heads,
            "global_attn_every_n_layers": 3, "local_attention": 128, "max_position_embeddings": 8192}


def _minilm(out: Path) -> None:
    from crossrank.models.synthetic import build_random_model

    build_random_model(out, layers=6)


def _ettin(layers: int, hidden: int, intermediate: int, heads: int) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        from crossrank.models.synthetic import build_st_cross_encoder

        build_st_cross_encoder(out, **_modernbert(layers, hidden, intermediate, heads))
    return build


def _gte_modernbert(out: Path) -> None:
    from crossrank.models.synthetic import build_random_model

    shape = _modernbert(22, 768, 1152, 12)
    build_random_model(out, architecture="modernbert", layers=shape.pop("layers"), **shape)


def _bge_m3(out: Path) -> None:
    from crossrank.models.synthetic import build_random_model

    build_random_model(out, architecture="xlm-roberta", layers=24, hidden_size=1024, num_attention_heads=16,
                       intermediate_size=4096, max_position_embeddings=8194)


def _qwen3_06b(out: Path) -> None:
    from crossrank.models.synthetic import build_qwen3_reranker

    build_qwen3_reranker(out, layers=28, hidden_size=1024, intermediate_size=3072, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, max_position_embeddings=40960)


@dataclass(frozen=True)
class Shape:
    """One catalogued reranker's architecture, to time without downloading it."""

    name: str
    stands_for: str
    build: Callable[[Path], None]
    llm: bool = False  #: an LLM reranker: seconds per pair on a CPU, so time a handful of documents


#: Ettin sizes from the Ettin paper's model table (layers, hidden, intermediate, heads)
SHAPES: dict[str, Shape] = {shape.name: shape for shape in (
    Shape("minilm-l6", "cross-encoder/ms-marco-MiniLM-L6-v2", _minilm),
    Shape("ettin-17m", "Ettin reranker 17m (ModernBERT 7 layers, hidden 256)", _ettin(7, 256, 384, 4)),
    Shape("ettin-68m", "Ettin reranker 68m (ModernBERT 19 layers, hidden 512)", _ettin(19, 512, 768, 8)),
    Shape("gte-modernbert-base", "Alibaba-NLP/gte-reranker-modernbert-base", _gte_modernbert),
    Shape("bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", _bge_m3),
    Shape("qwen3-reranker-0.6b", "Qwen/Qwen3-Reranker-0.6B", _qwen3_06b, llm=True),
)}


def is_random(model: str | Path) -> bool:
    """Whether ``model`` is a random-weight model built here (a local directory with the marker)."""
    return (Path(model) / RANDOM_WEIGHTS).is_file()


def bench_model(shape: str = "minilm-l6", cache_dir: Path | None = None) -> Path:
    """The random-weight model of ``shape`` (built once under the cache directory)."""
    from crossrank.models.export import default_cache_dir

    if shape not in SHAPES:
        raise InvalidInput(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    target = (cache_dir or default_cache_dir()) / "bench-models" / f"{shape}-shape-random"
    if not (target / RANDOM_WEIGHTS).is_file():
        log.warning("building a random-weight %s-shaped model in %s (once)", shape, target)
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        SHAPES[shape].build(building)
        (building / RANDOM_WEIGHTS).write_text(f"random weights with the architecture of {SHAPES[shape].stands_for}\n")
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    return target
