import argparse

import pytest

from crossrank import list_supported_models
from crossrank.cli import models as models_cli
from crossrank.models.catalogue import HEAD_KINDS, TEMPLATE_FAMILIES, find_spec
from crossrank.models.llm_head import TEMPLATES

REQUIRED = {
    "cross-encoder/ms-marco-MiniLM-L6-v2",
    "cross-encoder/ms-marco-MiniLM-L12-v2",
    "BAAI/bge-reranker-base",
    "jinaai/jina-reranker-v1-tiny-en",
    "jinaai/jina-reranker-v1-turbo-en",
    "jinaai/jina-reranker-v2-base-multilingual",
    "Alibaba-NLP/gte-reranker-modernbert-base",
    *(f"cross-encoder/ettin-reranker-{size}-v1" for size in ("17m", "32m", "68m", "150m", "400m", "1b")),
    "BAAI/bge-reranker-v2-m3",
    "Qwen/Qwen3-Reranker-0.6B",
    "Qwen/Qwen3-Reranker-4B",
    "Qwen/Qwen3-Reranker-8B",
    "mixedbread-ai/mxbai-rerank-base-v2",
    "mixedbread-ai/mxbai-rerank-large-v2",
    "BAAI/bge-reranker-v2-gemma",
}
FIELDS = {
    "name", "aliases", "kind", "size_gb", "license", "sources", "model_file", "max_length", "description",
    "head", "template", "practical", "instruction",
}


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


def test_every_cross_encoder_declares_a_head_and_llm_heads_a_known_template() -> None:
    for m in list_supported_models("cross-encoder"):
        assert m["head"] in HEAD_KINDS, m["name"]
        if m["head"] == "llm-yes-no":
            assert m["template"] in TEMPLATE_FAMILIES, m["name"]
        else:  # only a prompt-template model has a template or an instruction
            assert m["template"] is None and m["instruction"] is None, m["name"]
        assert m["model_file"] is None or m["model_file"].endswith(".onnx"), m["name"]
    # the families crossrank implements are named as the catalogue names them
    assert {t.family for t in TEMPLATES.values()} <= set(TEMPLATE_FAMILIES)


@pytest.mark.parametrize(
    ("name", "head", "template"),
    [
        ("cross-encoder/ettin-reranker-17m-v1", "st-modules", None),
        ("Alibaba-NLP/gte-reranker-modernbert-base", "sequence-classification", None),
        ("Qwen/Qwen3-Reranker-0.6B", "llm-yes-no", "qwen3-reranker"),
        ("mixedbread-ai/mxbai-rerank-base-v2", "llm-yes-no", "mxbai-rerank-v2"),
        ("BAAI/bge-reranker-v2-gemma", "llm-yes-no", "bge-reranker-v2-gemma"),
    ],
)
def test_new_families_carry_their_head_and_template(name: str, head: str, template: str | None) -> None:
    spec = find_spec(name)
    assert spec is not None and (spec.head, spec.template) == (head, template)


def test_qwen3_default_instruction_is_the_model_cards() -> None:
    spec = find_spec("qwen3-reranker-0.6b")
    assert spec is not None and spec.name == "Qwen/Qwen3-Reranker-0.6B"
    assert spec.instruction == TEMPLATES["qwen3-reranker"].default_instruction


def test_models_command_shows_head_and_practicality(capsys: pytest.CaptureFixture[str]) -> None:
    assert models_cli.run(argparse.Namespace(kind="cross-encoder", json=False)) == 0
    header, _, *rows = capsys.readouterr().out.splitlines()
    assert "head" in header.split() and "practical" in header.split()
    qwen = next(row for row in rows if row.startswith("Qwen/Qwen3-Reranker-0.6B "))
    assert "llm-yes-no (qwen3-reranker)" in qwen
    ettin = next(row for row in rows if row.startswith("cross-encoder/ettin-reranker-17m-v1 "))
    assert "st-modules" in ettin
