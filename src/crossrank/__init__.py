"""crossrank: retrieve & re-rank search with fast cross-encoders.

>>> from crossrank import Reranker  # doctest: +SKIP
>>> Reranker("cross-encoder/ms-marco-MiniLM-L6-v2").rank("crocs", ["Crocs Kids' Baya Clog"])  # doctest: +SKIP
"""

from crossrank.encode import Encoder
from crossrank.errors import (
    CrossrankError,
    HubUnavailable,
    InvalidInput,
    MissingExtra,
    ModelError,
    ModelNotFound,
)
from crossrank.models.catalogue import list_supported_models
from crossrank.rerank import Ranked, Reranker, Scores
from crossrank.retrieval import Index, Pipeline

__version__ = "0.1.0"

__all__ = [
    "CrossrankError",
    "Encoder",
    "HubUnavailable",
    "Index",
    "InvalidInput",
    "MissingExtra",
    "ModelError",
    "ModelNotFound",
    "Pipeline",
    "Ranked",
    "Reranker",
    "Scores",
    "list_supported_models",
]
