"""LLM yes/no reranker families in the original hub layout (no modules.json): exact against their references.

Tiny random causal LMs from the real configuration classes (Qwen2Config for mxbai-rerank-v2,
GemmaConfig and Gemma2Config for bge-reranker-v2-gemma, Qwen3Config for Qwen3-Reranker), saved
as the hub repos are: config.json with ``*ForCausalLM`` and a tokenizer carrying the special
tokens. A bare causal LM is scored only when its template family is named (``template=``
here, or the catalogue). The references are written from the reference implementations:

* mxbai-rerank-v2: ``mxbai_rerank.MxbaiRerankV2.prepare_inputs`` and ``forward``;
* bge-reranker-v2-gemma: FlagEmbedding's ``BaseLLMReranker.compute_score_single_gpu``;
* Qwen3-Reranker: the model card's transformers sample (``card_logits``).

Each takes the reference's own length limit; the test converts crossrank's ``max_length`` (all
tokens of the prompt) into it. The tolerance is 1e-4, or 3× torch's own fp32 error against a
float64 forward where random weights make logits large.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from crossrank import InvalidInput, ModelError, Reranker
from crossrank.models.head import read_head
from crossrank.models.llm_head import BGE_RERANKER_GEMMA, MXBAI_RERANK_V2, QWEN3_RERANKER, TEMPLATES, YesNoTemplate
from crossrank.models.synthetic import LlmFamily, build_llm_reranker
from fakehub import FakeHub
from test_llm_heads import DOCS, QUERY, card_logits

LONG = " ".join(["rain boots keep feet dry"] * 40)
Reference = Callable[..., np.ndarray]


def _lm(directory: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """transformers' tokenizer and causal LM (untyped third-party objects)."""
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(directory), padding_side="left")
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
    return tokenizer, model.eval()


def _token_ids(tokenizer: Any) -> Callable[[str], list[int]]:
    """The token ids of a text, without special tokens."""
    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


def _last_logits(model: Any, tokenizer: Any, rows: list[list[int]]) -> torch.Tensor:
    """The last token's logits: a left-padded batch (padded to a multiple of 8, as both references do)
    in fp32; row by row in float64, where transformers' masks give NaN on left-padded Gemma 2 rows."""
    with torch.no_grad():
        if model.dtype == torch.float64:
            return torch.cat([model(input_ids=torch.tensor([row])).logits[:, -1, :] for row in rows])
        batch = tokenizer.pad({"input_ids": rows}, padding=True, pad_to_multiple_of=8, return_tensors="pt")
        logits: torch.Tensor = model(**batch).logits
        return logits[:, -1, :]


def _only_second(first: list[int], second: list[int], max_length: int) -> list[int]:
    """``prepare_for_model(first, second, truncation="only_second", max_length=…, add_special_tokens=False)``
    (gone from transformers 5's fast tokenizers): the second sequence loses its end."""
    assert len(first) < max_length
    return first + second[: max_length - len(first)]


def mxbai_reference(directory: Path, query: str, docs: list[str], instruction: str | None = None,
                    max_length: int = 8192, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """``MxbaiRerankV2.prepare_inputs`` + ``forward``: logit("1") − logit("0") of the last token."""
    tokenizer, model = _lm(directory, dtype)
    ids = _token_ids(tokenizer)
    task = ("You are a search relevance expert who evaluates how well documents match search queries. For each "
            "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
            "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:")
    prefix = ids("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n")
    suffix, sep, task_ids = ids("<|im_end|>\n<|im_start|>assistant\n"), ids("\n"), ids(task)
    predefined = len(prefix) + len(task_ids) + len(suffix) + len(sep)
    model_max = model.config.max_position_embeddings
    max_length = min(max_length, model_max - predefined)
    rows: list[list[int]] = []
    for doc in docs:
        text = f"query: {query}" if not instruction else f"instruction: {instruction}\nquery: {query}"
        q = tokenizer(text, add_special_tokens=False, max_length=max_length * 3 // 4, truncation=True)["input_ids"]
        d = tokenizer(f"document: {doc}", add_special_tokens=False, truncation=True,
                      max_length=min(model_max - len(q) - predefined, max_length))["input_ids"]
        item = _only_second(q, sep + d, max_length)
        rows.append(prefix + item + sep + task_ids + suffix)
    last = _last_logits(model, tokenizer, rows)
    yes, no = ids("1")[0], ids("0")[0]
    return np.asarray((last[:, yes] - last[:, no]).double().numpy())


def gemma_reference(directory: Path, query: str, docs: list[str], instruction: str | None = None,
                    max_length: int = 512, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """FlagEmbedding's ``BaseLLMReranker.compute_score_single_gpu``: the logit of "Yes" of the last token."""
    tokenizer, model = _lm(directory, dtype)
    ids = _token_ids(tokenizer)
    default = BGE_RERANKER_GEMMA.default_instruction
    assert default is not None
    prompt = ids(instruction or default)
    sep = ids("\n")
    encode_max_length = max_length + len(sep) + len(prompt)
    q = tokenizer(f"A: {query}", add_special_tokens=False, max_length=max_length * 3 // 4, truncation=True)["input_ids"]
    rows: list[list[int]] = []
    for doc in docs:
        p = tokenizer(f"B: {doc}", add_special_tokens=False, max_length=max_length, truncation=True)["input_ids"]
        assert tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.pad_token_id
        item = _only_second([tokenizer.bos_token_id] + q, sep + p, encode_max_length)
        rows.append(item + sep + prompt)
    last = _last_logits(model, tokenizer, rows)
    return np.asarray(last[:, ids("Yes")[0]].double().numpy())


def qwen3_reference(directory: Path, query: str, docs: list[str], instruction: str | None = None,
                    max_length: int = 512, dtype: torch.dtype = torch.float32) -> np.ndarray:
    assert dtype == torch.float32  # the card's sample runs the model as loaded
    return card_logits(directory, query, docs, instruction=instruction, max_length=max_length)


def reference_limit(template: YesNoTemplate, directory: Path, max_length: int, instruction: str | None = None) -> int:
    """The reference's own limit that keeps the same document tokens as crossrank's ``max_length``."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    ids = _token_ids(tokenizer)

    def count(text: str) -> int:
        return len(ids(text))

    fixed = sum(count(p) for part in template.fixed_parts(instruction) for p in part if p != "<bos>")
    if template is MXBAI_RERANK_V2:  # its limit covers query, separator and document
        return max_length - (fixed - count("\n"))
    if template is BGE_RERANKER_GEMMA:  # its limit cuts the passage alone ("B: ..."); BOS, query, fixed parts on top
        return max_length - 1 - count(f"A: {QUERY}") - fixed
    return max_length  # the card's limit counts every token


FAMILIES: dict[str, tuple[LlmFamily, str, Reference]] = {  # id: (family, causal LM, reference)
    "mxbai-qwen2": ("mxbai-rerank-v2", "qwen2", mxbai_reference),
    "bge-gemma": ("bge-reranker-v2-gemma", "gemma", gemma_reference),
    "bge-gemma2": ("bge-reranker-v2-gemma", "gemma2", gemma_reference),
    "qwen3-bare": ("qwen3-reranker", "qwen3", qwen3_reference),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {}
    for key, (family, body, _) in FAMILIES.items():
        # Gemma 2: a sliding window shorter than the test prompts, and a final-logit cap that bites
        extra: dict[str, Any] = {"sliding_window": 24, "final_logit_softcapping": 0.5} if body == "gemma2" else {}
        init = 0.4 if body == "gemma" else 0.2  # spread scores, so that fast mode's bf16 keeps a margin
        built[key] = build_llm_reranker(tmp_path_factory.mktemp(key), family, body=body,
                                        initializer_range=init, **extra)
    return built


def _tolerance(reference: Reference, directory: Path, docs: list[str], **kwargs: object) -> tuple[np.ndarray, float]:
    """The float64 reference and the tolerance: 1e-4, or 3× torch's fp32 error where logits are large."""
    ref32 = reference(directory, QUERY, docs, **kwargs)
    if reference is qwen3_reference:
        return ref32, 1e-4
    ref64 = reference(directory, QUERY, docs, dtype=torch.float64, **kwargs)
    return ref64, max(1e-4, 3 * float(np.abs(ref32 - ref64).max()))


@pytest.mark.parametrize("key", list(FAMILIES))
def test_raw_scores_equal_the_reference_on_left_padded_mixed_batches(key: str, models: dict[str, Path],
                                                                      model_cache: Path) -> None:
    family, _, reference = FAMILIES[key]
    reranker = Reranker(models[key], cache_dir=model_cache, batch_size=3, template=family)
    assert reranker.template is TEMPLATES[family]
    ours = reranker.score(QUERY, DOCS, activation="none")
    ref, tol = _tolerance(reference, models[key], DOCS)
    print(f"{key}: max |crossrank - reference| = {np.abs(ours - ref).max():.2e} (tolerance {tol:.1e}, "
          f"logits up to {np.abs(ref).max():.1f})")
    assert np.abs(ours - ref).max() <= tol
    assert np.ptp(ref) > 1e-2


@pytest.mark.parametrize("key", list(FAMILIES))
def test_truncation_cuts_only_the_document_and_the_suffix_survives(key: str, models: dict[str, Path],
                                                                   model_cache: Path) -> None:
    family, _, reference = FAMILIES[key]
    template = TEMPLATES[family]
    reranker = Reranker(models[key], cache_dir=model_cache, max_length=160, template=family)
    docs = [LONG, "short", ""]
    ours = reranker.score_details([(QUERY, d) for d in docs], activation="none")
    assert list(ours.truncated) == [True, False, False]
    ref, tol = _tolerance(reference, models[key], docs, max_length=reference_limit(template, models[key], 160))
    assert np.abs(ours.values - ref).max() <= tol
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(models[key]))
    _, _, suffix = template.fixed_parts()
    tail = [i for piece in suffix for i in tokenizer(piece, add_special_tokens=False)["input_ids"]]
    ids = reranker.tokenize([(QUERY, LONG)]).ids[0]
    assert len(ids) == 160 and list(ids[-len(tail):]) == tail


INSTRUCTION = "Find products that keep feet dry"


@pytest.mark.parametrize("key", list(FAMILIES))
def test_a_custom_instruction_enters_the_prompt_where_the_family_puts_it(key: str, models: dict[str, Path],
                                                                          model_cache: Path) -> None:
    """mxbai: ``instruction: …`` before the query; gemma: it replaces the trailing prompt; qwen3: ``<Instruct>``."""
    family, _, reference = FAMILIES[key]
    reranker = Reranker(models[key], cache_dir=model_cache, template=family, instruction=INSTRUCTION)
    assert reranker.instruction == INSTRUCTION
    ours = reranker.score(QUERY, DOCS, activation="none")
    ref, tol = _tolerance(reference, models[key], DOCS, instruction=INSTRUCTION)
    assert np.abs(ours - ref).max() <= tol
    plain, _ = _tolerance(reference, models[key], DOCS)
    assert np.abs(ref - plain).max() > 1e-3  # the instruction is really in the prompt


@pytest.mark.parametrize("key", list(FAMILIES))
def test_a_per_call_instruction_scores_as_a_reranker_made_with_it(key: str, models: dict[str, Path],
                                                                   model_cache: Path) -> None:
    """A request's instruction, wherever the family puts it (gemma: in the template's suffix,
    which needs its own tokenizer), gives the reference's scores for that instruction."""
    family, _, reference = FAMILIES[key]
    reranker = Reranker(models[key], cache_dir=model_cache, template=family)
    pairs = [(QUERY, d) for d in DOCS]
    ours = reranker.score_details(pairs, activation="none", instruction=INSTRUCTION)
    assert ours.instruction == INSTRUCTION
    ref, tol = _tolerance(reference, models[key], DOCS, instruction=INSTRUCTION)
    assert np.abs(ours.values - ref).max() <= tol
    default = reranker.score_details(pairs, activation="none")  # the next call is back to the default
    plain, _ = _tolerance(reference, models[key], DOCS)
    assert np.abs(default.values - plain).max() <= tol and np.abs(ours.values - default.values).max() > 1e-3


@pytest.mark.parametrize("key", ["qwen3-bare", "bge-gemma"])
def test_long_document_windows_keep_the_template_around_every_window(key: str, models: dict[str, Path],
                                                                     model_cache: Path) -> None:
    """``long_documents="window"``: every window of the document is a whole prompt (the suffix
    ends each row), the score is the best window's, and a document that fits scores as before."""
    family, _, _ = FAMILIES[key]
    windowed = Reranker(models[key], cache_dir=model_cache, template=family, max_length=192, long_documents="window")
    plain = Reranker(models[key], cache_dir=model_cache, template=family, max_length=192)
    rows = windowed.tokenize([(QUERY, LONG)])
    assert len(rows.ids) > 1 and set(rows.owner.tolist()) == {0}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(models[key]))
    _, _, suffix = TEMPLATES[family].fixed_parts()
    tail = [i for piece in suffix for i in tokenizer(piece, add_special_tokens=False)["input_ids"]]
    assert all(list(ids[-len(tail):]) == tail for ids in rows.ids)
    got = windowed.score_details([(QUERY, LONG), (QUERY, "rain")], activation="none")
    assert got.values[0] == pytest.approx(windowed.infer(rows).max(), abs=1e-6)
    assert got.values[1] == pytest.approx(plain.score(QUERY, ["rain"], activation="none")[0], abs=1e-6)


@pytest.mark.parametrize("key", list(FAMILIES))
def test_the_torch_runtime_gives_the_reference_scores(key: str, models: dict[str, Path], model_cache: Path) -> None:
    """The GPU path (``providers=["cuda"]`` runs torch) scores LLM rerankers with the same one-row
    head; here on the CPU in fp32, against the reference."""
    family, _, reference = FAMILIES[key]
    reranker = Reranker(models[key], cache_dir=model_cache, template=family, runtime="torch", batch_size=3)
    assert reranker.runtime.name == "torch"
    ours = reranker.score(QUERY, DOCS, activation="none")
    ref, tol = _tolerance(reference, models[key], DOCS)
    assert np.abs(ours - ref).max() <= tol


FAST_DOCS = [f"{a} {b}" for a in ("rain boots", "walking shoes", "lemon cake", "beach sandals", "shoe charms", "a wet dog")
             for b in ("for the city", "on long trails", "with a rubber sole", "in the rain", "for kids")]


@pytest.mark.skipif(not __import__("crossrank.runtime.select", fromlist=["x"]).has_native_bf16(),
                    reason="fast mode needs a CPU with native bf16")
@pytest.mark.parametrize("key", ["mxbai-qwen2", "bge-gemma"])
def test_fast_mode_keeps_the_ranking_of_the_exact_mode(key: str, models: dict[str, Path], model_cache: Path) -> None:
    from scipy.stats import spearmanr

    family = FAMILIES[key][0]
    exact = Reranker(models[key], cache_dir=model_cache, template=family).score(QUERY, FAST_DOCS, activation="none")
    fast = Reranker(models[key], cache_dir=model_cache, template=family, mode="fast").score(
        QUERY, FAST_DOCS, activation="none")
    overlap = len(set(np.argsort(-exact)[:10]) & set(np.argsort(-fast)[:10]))
    rho = spearmanr(exact, fast).correlation
    print(f"{key} fast: top-10 {overlap}/10, Spearman {rho:.4f}")
    assert overlap >= 9 and rho >= 0.99


def test_a_causal_lm_without_a_named_template_is_refused_with_the_opt_in(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not evidence of a reranker[\s\S]*template='qwen3-reranker'[\s\S]*"
                                         r"--template[\s\S]*'template:' in a server config"):
        Reranker(models["mxbai-qwen2"], cache_dir=tmp_path / "cache")


def test_template_names_are_checked(models: dict[str, Path], bert_dir: Path, model_cache: Path) -> None:
    with pytest.raises(InvalidInput, match="template must be one of qwen3-reranker, mxbai-rerank-v2"):
        Reranker(models["mxbai-qwen2"], cache_dir=model_cache, template="qwen3")
    with pytest.raises(ModelError, match="is not a causal LM"):
        Reranker(bert_dir, cache_dir=model_cache, template="qwen3-reranker")


def test_a_template_whose_tokens_the_tokenizer_lacks_is_refused(models: dict[str, Path]) -> None:
    """The gemma template needs a BOS token and "Yes": a Qwen tokenizer has neither as one token."""
    with pytest.raises(ModelError, match=r"no single token '<bos>'|no single token 'Yes'"):
        Reranker(models["mxbai-qwen2"], template="bge-reranker-v2-gemma")


def test_a_logit_score_stack_over_gemma_takes_the_family_of_its_model_type(tmp_path: Path) -> None:
    model = build_llm_reranker(tmp_path / "gemma-st", "bge-reranker-v2-gemma", layout="modules", layers=1)
    head = read_head("g", model, model / "model.safetensors")
    assert head.template is BGE_RERANKER_GEMMA and head.no_id is None and head.yes_id is not None
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
    assert head.yes_id == tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    config = model / "1_LogitScore" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "true_token_id": head.yes_id + 1}))
    with pytest.raises(ModelError, match="refusing to guess"):  # ids that are not the family's tokens
        read_head("g", model, model / "model.safetensors")


def test_bare_llm_rerankers_load_from_the_hub_by_opt_in_and_by_the_catalogue(models: dict[str, Path], tmp_path: Path,
                                                                              model_cache: Path) -> None:
    repos = {"org/gemma-tiny": {"main": models["bge-gemma"]}, "org/mxbai-tiny": {"main": models["mxbai-qwen2"]}}
    with FakeHub(repos) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1")
        code = (
            "import dataclasses, json\nimport crossrank.models.resolve as resolve\nfrom crossrank import Reranker\n"
            "from crossrank.models.catalogue import CATALOGUE\n"
            "spec = dataclasses.replace(CATALOGUE[0], name='org/mxbai-tiny', aliases=(), sources=('org/mxbai-tiny',), "
            "head='llm-yes-no', template='mxbai-rerank-v2')\n"
            "resolve.find_spec = lambda name: spec if name == 'org/mxbai-tiny' else None\n"
            f"a = Reranker('org/gemma-tiny', template='bge-reranker-v2-gemma').score({QUERY!r}, {DOCS!r}, activation='none')\n"
            f"b = Reranker('org/mxbai-tiny').score({QUERY!r}, {DOCS!r}, activation='none')\n"
            "print(json.dumps([a.tolist(), b.tolist()]))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(hub.downloads)
    gemma, mxbai = json.loads(out.stdout.strip().splitlines()[-1])
    for key, scores in (("bge-gemma", gemma), ("mxbai-qwen2", mxbai)):
        local = Reranker(models[key], cache_dir=model_cache, template=FAMILIES[key][0])
        assert np.allclose(scores, local.score(QUERY, DOCS, activation="none"), atol=1e-6)


def test_the_qwen3_template_is_the_one_the_sentence_transformers_layout_uses() -> None:
    assert TEMPLATES["qwen3-reranker"] is QWEN3_RERANKER


def test_the_template_option_reaches_the_model_from_a_server_config_and_the_command_line(
        models: dict[str, Path], model_cache: Path) -> None:
    import argparse

    from crossrank.cli.common import add_reranker_options, reranker_kwargs
    from crossrank.server import ServerSettings, load_served_models
    from crossrank.server.config import model_entry

    raw = {"type": "cross-encoder", "model": f"file://{models['mxbai-qwen2']}", "template": "mxbai-rerank-v2"}
    served = load_served_models([model_entry("mxbai", raw)], ServerSettings(cache_dir=str(model_cache)))
    try:
        assert served.cross["mxbai"].reranker.template is MXBAI_RERANK_V2
    finally:
        served.close()
    with pytest.raises(InvalidInput, match="template must be one of qwen3-reranker"):
        model_entry("mxbai", {**raw, "template": "mxbai"})
    parser = argparse.ArgumentParser()
    add_reranker_options(parser)
    assert reranker_kwargs(parser.parse_args(["--template", "bge-reranker-v2-gemma"]))["template"] == "bge-reranker-v2-gemma"
    with pytest.raises(SystemExit):
        parser.parse_args(["--template", "gemma"])


def test_every_catalogue_template_is_a_known_family() -> None:
    from crossrank.models.catalogue import CATALOGUE

    for spec in CATALOGUE:
        assert spec.template is None or spec.template in TEMPLATES, spec.name
        assert (spec.template is not None) <= (spec.head == "llm-yes-no"), spec.name


def test_an_instruction_in_the_suffix_that_fills_max_length_is_refused_with_its_size(models: dict[str, Path],
                                                                                      model_cache: Path) -> None:
    """gemma's instruction is a fixed part: one too long leaves no room at all, said at construction."""
    with pytest.raises(InvalidInput, match=r"takes \d+ tokens with its instruction, leaving no room in max_length 160"):
        Reranker(models["bge-gemma"], cache_dir=model_cache, template="bge-reranker-v2-gemma", max_length=160,
                 instruction="judge the passage " * 100)
