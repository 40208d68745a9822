"""The catalogue of known models: frozen descriptions, looked up by name or alias.

Models outside the catalogue still load (any sequence-classification model with one or two
labels, any encoder for the bi-encoder side); the catalogue only adds metadata, aliases and
the name of the ONNX file to fetch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class ModelKind(str, Enum):
    CROSS_ENCODER = "cross-encoder"
    BI_ENCODER = "bi-encoder"


@dataclass(frozen=True)
class ModelSpec:
    """What crossrank knows about a model before downloading it."""

    name: str
    kind: ModelKind
    size_gb: float
    license: str
    sources: tuple[str, ...]
    model_file: str
    max_length: int
    description: str
    aliases: tuple[str, ...] = ()
    pooling: str | None = None  # bi-encoders: "mean" or "cls"
    normalize: bool | None = None  # bi-encoders: L2-normalise embeddings
    dim: int | None = None  # bi-encoders: embedding size
    #: cross-encoders: the scoring head ("sequence-classification", "st-modules", "llm-yes-no")
    head: str = "sequence-classification"
    #: llm-yes-no: the prompt-template family, for repos whose files do not declare it
    #: (no ``modules.json``), e.g. "qwen3-reranker"
    template: str | None = None
    #: what running it takes, measured: e.g. "GPU recommended: 3 pairs/s on a 2-core CPU"
    practical: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["sources"] = list(self.sources)
        data["aliases"] = list(self.aliases)
        return data


_CE = ModelKind.CROSS_ENCODER
_BI = ModelKind.BI_ENCODER

CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="cross-encoder/ms-marco-MiniLM-L6-v2",
        aliases=(
            "cross-encoder/ms-marco-MiniLM-L-6-v2",
            "metarank/ce-msmarco-MiniLM-L6-v2",
            "Xenova/ms-marco-MiniLM-L-6-v2",
        ),
        kind=_CE,
        size_gb=0.09,
        license="apache-2.0",
        sources=("cross-encoder/ms-marco-MiniLM-L6-v2", "Xenova/ms-marco-MiniLM-L-6-v2"),
        model_file="onnx/model.onnx",
        max_length=512,
        description="MiniLM-L6 trained on MS MARCO passage ranking; English; the fast default.",
    ),
    ModelSpec(
        name="cross-encoder/ms-marco-MiniLM-L12-v2",
        aliases=("cross-encoder/ms-marco-MiniLM-L-12-v2", "Xenova/ms-marco-MiniLM-L-12-v2"),
        kind=_CE,
        size_gb=0.13,
        license="apache-2.0",
        sources=("cross-encoder/ms-marco-MiniLM-L12-v2", "Xenova/ms-marco-MiniLM-L-12-v2"),
        model_file="onnx/model.onnx",
        max_length=512,
        description="MiniLM-L12 trained on MS MARCO; English; more accurate, about 2x slower than L6.",
    ),
    ModelSpec(
        name="BAAI/bge-reranker-base",
        kind=_CE,
        size_gb=1.11,
        license="mit",
        sources=("BAAI/bge-reranker-base",),
        model_file="onnx/model.onnx",
        max_length=512,
        description="XLM-RoBERTa base reranker; English and Chinese.",
    ),
    ModelSpec(
        name="jinaai/jina-reranker-v1-tiny-en",
        kind=_CE,
        size_gb=0.13,
        license="apache-2.0",
        sources=("jinaai/jina-reranker-v1-tiny-en",),
        model_file="onnx/model.onnx",
        max_length=8192,
        description="JinaBERT (ALiBi) 4-layer reranker; English; long inputs up to 8k tokens.",
    ),
    ModelSpec(
        name="jinaai/jina-reranker-v1-turbo-en",
        kind=_CE,
        size_gb=0.15,
        license="apache-2.0",
        sources=("jinaai/jina-reranker-v1-turbo-en",),
        model_file="onnx/model.onnx",
        max_length=8192,
        description="JinaBERT (ALiBi) 6-layer reranker; English; long inputs up to 8k tokens.",
    ),
    ModelSpec(
        name="jinaai/jina-reranker-v2-base-multilingual",
        kind=_CE,
        size_gb=1.11,
        license="cc-by-nc-4.0",
        sources=("jinaai/jina-reranker-v2-base-multilingual",),
        model_file="onnx/model.onnx",
        max_length=1024,
        description="XLM-RoBERTa-based multilingual reranker (100+ languages); non-commercial licence.",
    ),
    ModelSpec(
        name="sentence-transformers/all-MiniLM-L6-v2",
        aliases=("all-MiniLM-L6-v2", "Xenova/all-MiniLM-L6-v2"),
        kind=_BI,
        size_gb=0.09,
        license="apache-2.0",
        sources=("sentence-transformers/all-MiniLM-L6-v2",),
        model_file="onnx/model.onnx",
        max_length=256,
        description="MiniLM-L6 sentence embeddings (384 dims, mean pooling, normalised); English.",
        pooling="mean",
        normalize=True,
        dim=384,
    ),
    ModelSpec(
        name="sentence-transformers/multi-qa-mpnet-base-dot-v1",
        aliases=("multi-qa-mpnet-base-dot-v1",),
        kind=_BI,
        size_gb=0.44,
        license="apache-2.0",
        sources=("sentence-transformers/multi-qa-mpnet-base-dot-v1",),
        model_file="onnx/model.onnx",
        max_length=512,
        description="MPNet base for question answering retrieval (768 dims, CLS pooling, dot product).",
        pooling="cls",
        normalize=False,
        dim=768,
    ),
)

_BY_NAME: dict[str, ModelSpec] = {}
for _spec in CATALOGUE:
    for _key in (_spec.name, *_spec.aliases):
        _BY_NAME[_key.lower()] = _spec


def find_spec(name: str) -> ModelSpec | None:
    """Return the catalogue entry for a name or alias (case-insensitive), or None."""
    return _BY_NAME.get(name.lower())


def list_supported_models(kind: ModelKind | str | None = None) -> list[dict[str, Any]]:
    """Describe every catalogued model as a plain dict.

    >>> names = [m["name"] for m in list_supported_models("cross-encoder")]
    >>> "cross-encoder/ms-marco-MiniLM-L6-v2" in names
    True
    """
    wanted = ModelKind(kind) if kind is not None else None
    return [spec.to_dict() for spec in CATALOGUE if wanted is None or spec.kind == wanted]
