"""LLM yes/no rerankers (Qwen3-Reranker): the template, the one-row head, exact against the model card.

A tiny random Qwen3ForCausalLM in the sentence-transformers layout (Transformer → LogitScore
with the yes/no token ids), with a byte-level BPE tokenizer carrying Qwen's pre-tokenizer and
chat tokens, loaded through the same path as a hub model. The reference is the model card's
transformers sample: prefix + body (truncated to fit) + suffix, left padding, the last
token's logits, score = logit(yes) − logit(no).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from crossrank import InvalidInput, ModelError, Reranker
from crossrank.models.head import read_head
from crossrank.models.llm_head import QWEN3_RERANKER as TEMPLATE
from crossrank.models.synthetic import build_qwen3_reranker
from tolerances import assert_fp32_parity

QUERY = "which shoes are good for walking in the rain"
DOCS = [
    "Crocs Jibbitz 5-Pack Alien Shoe Charms",
    "",
    "Waterproof hiking boots keep your feet dry on long walks in wet weather, whatever the season.",
    "naïve café 東京 — Straße 🙂",
    "rain",
]


def card_logits(directory: Path, query: str, docs: list[str], instruction: str | None = None,
                max_length: int = 512) -> np.ndarray:
    """Qwen3-Reranker's transformers sample, with the raw log-odds instead of P(yes)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), padding_side="left")
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(directory))
    model = model.float().eval()
    prefix = tokenizer.encode("".join(TEMPLATE.prefix), add_special_tokens=False)
    suffix = tokenizer.encode("".join(TEMPLATE.suffix), add_special_tokens=False)
    instruction = instruction or TEMPLATE.default_instruction
    bodies = [f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}" for doc in docs]
    inputs = tokenizer(bodies, padding=False, truncation="longest_first", return_attention_mask=False,
                       max_length=max_length - len(prefix) - len(suffix))
    inputs["input_ids"] = [prefix + ids + suffix for ids in inputs["input_ids"]]
    batch = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    with torch.no_grad():
        last = model(**batch).logits[:, -1, :]
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    return np.asarray((last[:, yes] - last[:, no]).double().numpy())


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_qwen3_reranker(tmp_path_factory.mktemp("qwen3-reranker"), initializer_range=0.2)


def test_the_head_is_read_from_the_logit_score_module(qwen3: Path) -> None:
    head = read_head("q", qwen3, qwen3 / "model.safetensors")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(qwen3))
    assert head.kind == "llm-yes-no" and head.template is TEMPLATE
    assert [head.yes_id, head.no_id] == tokenizer.convert_tokens_to_ids(["yes", "no"])


def test_raw_scores_equal_the_model_card_with_default_and_custom_instructions(qwen3: Path, model_cache: Path) -> None:
    reranker = Reranker(qwen3, cache_dir=model_cache, batch_size=3)
    assert reranker.instruction == "Given a web search query, retrieve relevant passages that answer the query"
    ours = reranker.score(QUERY, DOCS, activation="none")
    ref = card_logits(qwen3, QUERY, DOCS)
    print(f"qwen3-reranker: max |crossrank - card sample| = {np.abs(ours - ref).max():.2e} "
          f"(logits up to {np.abs(ref).max():.1f})")
    assert_fp32_parity(ours, ref)
    assert np.ptp(ref) > 1e-2
    # the card's P(yes) = softmax over (no, yes) = sigmoid of the log-odds
    assert np.allclose(reranker.score(QUERY, DOCS), 1 / (1 + np.exp(-ref)), atol=1e-5)
    custom = "Find products that keep feet dry"
    instructed = Reranker(qwen3, cache_dir=model_cache, instruction=custom).score(QUERY, DOCS, activation="none")
    ref_custom = card_logits(qwen3, QUERY, DOCS, instruction=custom)
    assert_fp32_parity(instructed, ref_custom)
    assert np.abs(ref_custom - ref).max() > 1e-3  # the instruction is really in the prompt


def test_truncation_cuts_only_the_document_and_the_suffix_survives(qwen3: Path, model_cache: Path) -> None:
    reranker = Reranker(qwen3, cache_dir=model_cache, max_length=160)
    docs = [" ".join(["rain boots keep feet dry"] * 40), "short", ""]
    ours = reranker.score_details([(QUERY, d) for d in docs], activation="none")
    assert list(ours.truncated) == [True, False, False]
    assert_fp32_parity(ours.values, card_logits(qwen3, QUERY, docs, max_length=160))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(qwen3))
    suffix = tokenizer.encode("".join(TEMPLATE.suffix), add_special_tokens=False)
    prefix = tokenizer.encode("".join(TEMPLATE.prefix), add_special_tokens=False)
    ids = reranker.tokenize([(QUERY, docs[0])]).ids[0]
    assert len(ids) == 160 and ids[-len(suffix):] == suffix and ids[:len(prefix)] == prefix


def test_an_instruction_for_a_head_that_cannot_use_one_is_refused(bert_dir: Path, model_cache: Path) -> None:
    with pytest.raises(InvalidInput, match="instruction-capable head"):
        Reranker(bert_dir, cache_dir=model_cache, instruction="find shoes")


def test_logit_score_ids_that_disagree_with_the_template_are_refused(qwen3: Path, tmp_path: Path) -> None:
    model = shutil.copytree(qwen3, tmp_path / "wrong-ids")
    config = model / "1_LogitScore" / "config.json"
    data = json.loads(config.read_text())
    data["true_token_id"], data["false_token_id"] = data["false_token_id"], data["true_token_id"]
    config.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"refusing to guess[\s\S]*Heads crossrank runs"):
        Reranker(model, cache_dir=tmp_path / "cache")


def test_an_instruction_and_query_that_leave_no_room_are_refused_with_token_counts(qwen3: Path, model_cache: Path) -> None:
    """The templated query is never cut (that would cut the template): a clear error instead."""
    reranker = Reranker(qwen3, cache_dir=model_cache, max_length=96)
    with pytest.raises(InvalidInput, match=r"instruction and query take \d+ tokens[\s\S]*max_length 96 keeps at most \d+"):
        reranker.score(QUERY, ["short"])


FAST_DOCS = [f"{a} {b}" for a in ("rain boots", "walking shoes", "lemon cake", "beach sandals", "shoe charms", "a wet dog")
             for b in ("for the city", "on long trails", "with a rubber sole", "in the rain", "for kids")]


@pytest.mark.skipif(not __import__("crossrank.runtime.select", fromlist=["x"]).has_native_bf16(),
                    reason="fast mode needs a CPU with native bf16")
def test_fast_mode_keeps_the_ranking_of_the_exact_mode(qwen3: Path, model_cache: Path) -> None:
    from scipy.stats import spearmanr

    exact = Reranker(qwen3, cache_dir=model_cache).score(QUERY, FAST_DOCS, activation="none")
    fast = Reranker(qwen3, cache_dir=model_cache, mode="fast").score(QUERY, FAST_DOCS, activation="none")
    overlap = len(set(np.argsort(-exact)[:10]) & set(np.argsort(-fast)[:10]))
    rho = spearmanr(exact, fast).correlation
    print(f"qwen3-reranker fast: top-10 {overlap}/10, Spearman {rho:.4f}")
    assert overlap >= 9 and rho >= 0.99
