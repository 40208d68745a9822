from crossrank import list_supported_models
from crossrank.models.catalogue import find_spec

REQUIRED = {
    "cross-encoder/ms-marco-MiniLM-L6-v2",
    "cross-encoder/ms-marco-MiniLM-L12-v2",
    "BAAI/bge-reranker-base",
    "jinaai/jina-reranker-v1-tiny-en",
    "jinaai/jina-reranker-v1-turbo-en",
    "jinaai/jina-reranker-v2-base-multilingual",
}
FIELDS = {"name", "aliases", "kind", "size_gb", "license", "sources", "model_file", "max_length", "description"}


def test_catalogue_lists_required_rerankers_with_all_fields() -> None:
    models = list_supported_models("cross-encoder")
    assert REQUIRED <= {m["name"] for m in models}
    for m in models:
        assert FIELDS <= set(m), m["name"]
        assert m["kind"] == "cross-encoder"
        assert m["size_gb"] > 0 and m["max_length"] >= 512 and m["sources"]


def test_aliases_resolve_to_the_canonical_model() -> None:
    for alias in ("cross-encoder/ms-marco-MiniLM-L-6-v2", "metarank/ce-msmarco-MiniLM-L6-v2", "Xenova/ms-marco-MiniLM-L-6-v2"):
        spec = find_spec(alias)
        assert spec is not None and spec.name == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert find_spec("no/such-model") is None


def test_kinds_filter() -> None:
    bi = list_supported_models("bi-encoder")
    assert bi and all(m["kind"] == "bi-encoder" and m["dim"] for m in bi)
    assert len(list_supported_models()) == len(bi) + len(list_supported_models("cross-encoder"))
