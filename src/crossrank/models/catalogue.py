"""The catalogue of known models: frozen descriptions, looked up by name or alias.

Models outside the catalogue still load (any sequence-classification model with one or two
labels, any encoder for the bi-encoder side); the catalogue only adds metadata, aliases and
the name of the ONNX file to fetch.

Each entry's hub id, licence, parameter count and maximum length were read from the model's own
hub page or files (model card, ``config.json``); ``size_gb`` is the fp32 size of the weights, what
an ONNX file of the model holds (above 2 GB it is written with external data).
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
    #: the ONNX file in the repository to fetch, or None: the repository has none crossrank runs
    #: as it is, so the weights are fetched and exported once
    model_file: str | None
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
    #: what running it takes, measured with `crossrank bench --shape` (docs/MODELS.md: how and where)
    practical: str | None = None
    #: llm-yes-no: the instruction in the prompt when the caller gives none (None: the family has none)
    instruction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["sources"] = list(self.sources)
        data["aliases"] = list(self.aliases)
        return data


#: the scoring heads a cross-encoder entry may declare (see crossrank.models.head)
HEAD_KINDS = ("sequence-classification", "st-modules", "llm-yes-no")
#: the prompt-template families of the llm-yes-no entries
TEMPLATE_FAMILIES = ("qwen3-reranker", "mxbai-rerank-v2", "bge-reranker-v2-gemma")
#: the default instructions, as the model cards' samples write them
_QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
_GEMMA_INSTRUCTION = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query by "
    "providing a prediction of either 'Yes' or 'No'."
)

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
        practical="CPU: 466 titles/s, 60 passages/s (2 CPU cores, fast)",
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
        name="Alibaba-NLP/gte-reranker-modernbert-base",
        aliases=("gte-reranker-modernbert-base",),
        kind=_CE,
        size_gb=0.60,
        license="apache-2.0",
        sources=("Alibaba-NLP/gte-reranker-modernbert-base",),
        model_file="onnx/model.onnx",
        max_length=8192,
        description="ModernBERT-base reranker (149M); English; inputs up to 8k tokens.",
        practical="CPU for titles, GPU for passages: 41 titles/s, 7 passages/s (2 CPU cores, fast)",
    ),
    ModelSpec(
        name="cross-encoder/ettin-reranker-17m-v1",
        aliases=("ettin-reranker-17m",),
        kind=_CE,
        size_gb=0.07,
        license="apache-2.0",
        sources=("cross-encoder/ettin-reranker-17m-v1",),
        model_file=None,
        max_length=7999,
        description="Ettin ModernBERT reranker (16.8M); English; 7999 tokens; beats MiniLM-L12.",
        head="st-modules",
        practical="CPU: 446 titles/s, 89 passages/s (2 CPU cores, fast)",
    ),
    ModelSpec(
        name="cross-encoder/ettin-reranker-32m-v1",
        aliases=("ettin-reranker-32m",),
        kind=_CE,
        size_gb=0.13,
        license="apache-2.0",
        sources=("cross-encoder/ettin-reranker-32m-v1",),
        model_file=None,
        max_length=7999,
        description="Ettin ModernBERT reranker (31.9M); English; 7999 tokens.",
        head="st-modules",
    ),
    ModelSpec(
        name="cross-encoder/ettin-reranker-68m-v1",
        aliases=("ettin-reranker-68m",),
        kind=_CE,
        size_gb=0.27,
        license="apache-2.0",
        sources=("cross-encoder/ettin-reranker-68m-v1",),
        model_file=None,
        max_length=7999,
        description="Ettin ModernBERT reranker (68.1M); English; 7999 tokens.",
        head="st-modules",
        practical="CPU: 90 titles/s, 24 passages/s (2 CPU cores, fast)",
    ),
    ModelSpec(
        name="cross-encoder/ettin-reranker-150m-v1",
        aliases=("ettin-reranker-150m",),
        kind=_CE,
        size_gb=0.6,
        license="apache-2.0",
        sources=("cross-encoder/ettin-reranker-150m-v1",),
        model_file=None,
        max_length=7999,
        description="Ettin ModernBERT reranker (about 150M); English; 7999 tokens; best under 600M.",
        head="st-modules",
    ),
    ModelSpec(
        name="cross-encoder/ettin-reranker-400m-v1",
        aliases=("ettin-reranker-400m",),
        kind=_CE,
        size_gb=1.6,
        license="apache-2.0",
        sources=("cross-encoder/ettin-reranker-400m-v1",),
        model_file=None,
        max_length=7999,
        description="Ettin ModernBERT reranker (about 400M); English; 7999 tokens.",
        head="st-modules",
    ),
    ModelSpec(
        name="cross-encoder/ettin-reranker-1b-v1",
        aliases=("ettin-reranker-1b",),
        kind=_CE,
        size_gb=4.0,
        license="apache-2.0",
        sources=("cross-encoder/ettin-reranker-1b-v1",),
        model_file=None,
        max_length=7999,
        description="Ettin ModernBERT reranker (about 1B); English; 7999 tokens; near mxbai-large-v2.",
        head="st-modules",
    ),
    ModelSpec(
        name="BAAI/bge-reranker-v2-m3",
        aliases=("bge-reranker-v2-m3",),
        kind=_CE,
        size_gb=2.27,
        license="apache-2.0",
        sources=("BAAI/bge-reranker-v2-m3",),
        model_file=None,
        max_length=8192,
        description="XLM-RoBERTa-large reranker (568M) from bge-m3; multilingual; trained at 1024 tokens.",
        practical="GPU recommended: 11 titles/s, 1.9 passages/s (2 CPU cores, fast)",
    ),
    ModelSpec(
        name="Qwen/Qwen3-Reranker-0.6B",
        aliases=("qwen3-reranker-0.6b",),
        kind=_CE,
        size_gb=2.4,
        license="apache-2.0",
        sources=("Qwen/Qwen3-Reranker-0.6B",),
        model_file=None,
        max_length=32768,
        description="Qwen3 0.6B LLM reranker, logit(yes) - logit(no); 100+ languages; instruction-aware.",
        head="llm-yes-no",
        template="qwen3-reranker",
        instruction=_QWEN3_INSTRUCTION,
        practical="GPU recommended: 3.6 titles/s, 1.0 passages/s (2 CPU cores, fast)",
    ),
    ModelSpec(
        name="Qwen/Qwen3-Reranker-4B",
        aliases=("qwen3-reranker-4b",),
        kind=_CE,
        size_gb=16.1,
        license="apache-2.0",
        sources=("Qwen/Qwen3-Reranker-4B",),
        model_file=None,
        max_length=32768,
        description="Qwen3 4B LLM reranker, logit(yes) - logit(no); 100+ languages; instruction-aware.",
        head="llm-yes-no",
        template="qwen3-reranker",
        instruction=_QWEN3_INSTRUCTION,
        practical="GPU only: about 7x the parameters of Qwen3-Reranker-0.6B",
    ),
    ModelSpec(
        name="Qwen/Qwen3-Reranker-8B",
        aliases=("qwen3-reranker-8b",),
        kind=_CE,
        size_gb=32.8,
        license="apache-2.0",
        sources=("Qwen/Qwen3-Reranker-8B",),
        model_file=None,
        max_length=32768,
        description="Qwen3 8B LLM reranker, logit(yes) - logit(no); 100+ languages; instruction-aware.",
        head="llm-yes-no",
        template="qwen3-reranker",
        instruction=_QWEN3_INSTRUCTION,
        practical="GPU only: about 14x the parameters of Qwen3-Reranker-0.6B",
    ),
    ModelSpec(
        name="mixedbread-ai/mxbai-rerank-base-v2",
        aliases=("mxbai-rerank-base-v2",),
        kind=_CE,
        size_gb=1.98,
        license="apache-2.0",
        sources=("mixedbread-ai/mxbai-rerank-base-v2",),
        model_file=None,
        max_length=8192,
        description="Qwen2 0.5B LLM reranker (tokens 1/0); 100+ languages and code; 8k context.",
        head="llm-yes-no",
        template="mxbai-rerank-v2",
        practical="GPU recommended: about the size of Qwen3-Reranker-0.6B",
    ),
    ModelSpec(
        name="mixedbread-ai/mxbai-rerank-large-v2",
        aliases=("mxbai-rerank-large-v2",),
        kind=_CE,
        size_gb=6.17,
        license="apache-2.0",
        sources=("mixedbread-ai/mxbai-rerank-large-v2",),
        model_file=None,
        max_length=8192,
        description="Qwen2 1.5B LLM reranker (tokens 1/0); 100+ languages and code; 8k context.",
        head="llm-yes-no",
        template="mxbai-rerank-v2",
        practical="GPU only: about 2.5x the parameters of Qwen3-Reranker-0.6B",
    ),
    ModelSpec(
        name="BAAI/bge-reranker-v2-gemma",
        aliases=("bge-reranker-v2-gemma",),
        kind=_CE,
        size_gb=10.0,
        license="apache-2.0",
        sources=("BAAI/bge-reranker-v2-gemma",),
        model_file=None,
        max_length=8192,
        description="Gemma 2B LLM reranker, the logit of 'Yes'; multilingual; its card's samples use 1024 tokens.",
        head="llm-yes-no",
        template="bge-reranker-v2-gemma",
        instruction=_GEMMA_INSTRUCTION,
        practical="GPU only: about 4x the parameters of Qwen3-Reranker-0.6B",
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
