"""The scoring head a model's own files declare, read before anything is exported or run.

A cross-encoder's score is the logit of its trained head. Which head that is, is read from
the model's files, never guessed (:func:`read_head` returns a :class:`Head`):

* ``sequence-classification``: ``config.json``'s ``architectures`` names a
  ``*ForSequenceClassification`` class (BERT, XLM-RoBERTa, ModernBERT with its
  ``classifier_pooling``...) and the weights hold its classifier tensors (read from the
  safetensors header, no torch); when transformers loads the weights (export, torch runtime)
  no weight may be missing: :func:`refuse_fresh_weights` checks its loading report;
* ``st-modules``: a sentence-transformers CrossEncoder whose ``modules.json`` stacks a
  Transformer body, Pooling, Dense and LayerNorm modules ending in one ``scores`` logit
  (:mod:`crossrank.models.st_stack` reads each module's config);
* ``llm-yes-no``: a causal LM scored by its yes/no token logits with a known prompt template
  (:mod:`crossrank.models.llm_head`): either ``Transformer → LogitScore`` in ``modules.json``
  (token ids from its config), or a bare ``*ForCausalLM`` (the original hub layout of
  Qwen3-Reranker, mxbai-rerank-v2, bge-reranker-v2-gemma) whose template family the catalogue
  or the user names (``template=``), token ids from its tokenizer. A causal LM alone is no
  evidence of a reranker: without a named family it is refused.

Anything else (a bi-encoder, a base or causal language model, a head not supported yet) is
refused with a :class:`ModelError` that names the files found and the heads supported.
Loading such a model as ``AutoModelForSequenceClassification`` would give it a freshly
initialised, random head: scores that mean nothing.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from crossrank.errors import ModelError
from crossrank.models.config import read_json
from crossrank.models.llm_head import TEMPLATES, YesNoTemplate, template_for, template_named, token_ids
from crossrank.models.st_stack import StModule, is_cross_encoder_stack, module_types, read_modules, read_stack

#: module names that transformers' sequence-classification heads use for their weights
HEAD_MODULES = frozenset({"classifier", "score", "classification_head", "logits_proj", "pre_classifier"})
SUPPORTED_HEAD = "ForSequenceClassification"
EXAMPLES = "cross-encoder/ms-marco-MiniLM-L6-v2 or BAAI/bge-reranker-base"
_HEADER_LIMIT = 100 << 20  # a safetensors header is JSON; larger than this is not one

HeadKind = Literal["sequence-classification", "st-modules", "llm-yes-no"]
#: the heads crossrank runs, and what each is read from
SUPPORTED_HEADS = {
    "sequence-classification": "config.json architectures *ForSequenceClassification with its classifier weights",
    "st-modules": "a sentence-transformers CrossEncoder modules.json: Transformer → Pooling(cls|mean) → "
    "Dense/LayerNorm → Dense(H, 1) writing 'scores'",
    "llm-yes-no": "a causal LM with a modules.json Transformer → LogitScore(true/false token ids), or a bare "
    f"*ForCausalLM with a named prompt template (template=: {', '.join(TEMPLATES)})",
}


@dataclass(frozen=True)
class Head:
    """How a model turns tokens into one relevance logit per pair, as its files declare it."""

    kind: HeadKind
    architecture: str | None  #: config.json's first architecture, when it names one
    modules: tuple[StModule, ...] = ()  #: st-modules: the modules after the Transformer body
    template: YesNoTemplate | None = None  #: llm-yes-no: the prompt and scoring tokens
    yes_id: int | None = None  #: llm-yes-no: the scored token
    no_id: int | None = None  #: llm-yes-no: the token subtracted (None: the yes logit alone)

    @property
    def export_task(self) -> str:
        """What the export child builds: ``sequence-classification``, ``st-modules``, ``llm-yes-no:YES:NO``."""
        if self.kind == "llm-yes-no":
            return f"llm-yes-no:{self.yes_id}:{-1 if self.no_id is None else self.no_id}"
        return self.kind

    def describe(self) -> str:
        """``sequence-classification (BertForSequenceClassification)``, ``st-modules (Pooling(cls) → ...)``."""
        if self.kind == "st-modules":
            parts = [f"Pooling({m.settings['mode']})" if m.kind == "pooling" else
                     f"Dense({m.settings['in_features']}→{m.settings['out_features']}, {m.settings['activation']})"
                     if m.kind == "dense" else "LayerNorm" for m in self.modules]
            return f"st-modules ({self.architecture or 'Transformer'} → {' → '.join(parts)})"
        if self.kind == "llm-yes-no" and self.template is not None:
            return f"llm-yes-no ({self.template.family}, {self.architecture}, tokens {self.yes_id}/{self.no_id})"
        return f"{self.kind} ({self.architecture})" if self.architecture else self.kind


def files_found(directory: Path) -> str:
    """The model's files, for messages: ``config.json, model.safetensors, modules.json (Transformer, Pooling)``."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir() if not p.name.startswith("."))
    except OSError:
        return "(unreadable)"
    shown = ", ".join(names[:16]) + (" ..." if len(names) > 16 else "")
    if (directory / "modules.json").is_file():
        try:
            shown += f"; modules.json stacks {' → '.join(module_types(directory))}"
        except ModelError:
            shown += "; modules.json unreadable"
    return shown


def _supported() -> str:
    return "; ".join(f"{kind}: {what}" for kind, what in SUPPORTED_HEADS.items())


def refuse(name: str, directory: Path, reason: str) -> ModelError:
    """A refusal that names what was found and what crossrank runs."""
    return ModelError(f"{reason} Files found in {directory}: {files_found(directory)}. Heads crossrank runs: {_supported()}.")


def _advice(architecture: str, directory: Path) -> str:
    """What to use instead of a model whose architecture has no relevance head."""
    instead = f"Rerank with a trained cross-encoder such as {EXAMPLES}."
    if (directory / "modules.json").is_file() and architecture.endswith("Model"):
        return (
            "It looks like a sentence-transformers bi-encoder (its modules.json is not a CrossEncoder stack): "
            "it embeds texts (crossrank.Encoder, or 'type: bi-encoder' in a server config). "
            f"{instead}"
        )
    if architecture.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
        return (
            "A causal LM alone is not evidence of a reranker. If it is one of the LLM rerankers whose prompt "
            f"templates crossrank knows ({', '.join(TEMPLATES)}), name its template: Reranker(..., "
            "template='qwen3-reranker'), --template on the command line, or 'template:' in a server config. "
            f"{instead}"
        )
    if architecture.endswith(("ForMaskedLM", "ForPreTraining")):
        return f"It is a pre-trained language model, not fine-tuned for relevance. {instead}"
    return f"Embed with it through crossrank.Encoder if it is a bi-encoder. {instead}"


def safetensors_names(weights: Path) -> list[str] | None:
    """The tensor names in a safetensors file or sharded index, without loading any tensor.

    A safetensors file starts with an 8-byte little-endian header length and a JSON header
    mapping tensor names to their offsets. ``None`` for other formats (``pytorch_model.bin``).
    """
    if weights.name.endswith(".safetensors.index.json"):
        weight_map = read_json(weights).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelError(f"{weights} has no 'weight_map'; re-download the model")
        return list(weight_map)
    if not weights.name.endswith(".safetensors"):
        return None
    try:
        with weights.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > _HEADER_LIMIT:
                raise ValueError(f"header length {size}")
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelError(f"{weights} is not a readable safetensors file ({exc}); re-download the model") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{weights} is not a readable safetensors file; re-download the model")
    return [name for name in header if name != "__metadata__"]


def _is_head(name: str) -> bool:
    return any(part in HEAD_MODULES for part in name.split("."))


def _architectures(config: dict[str, object]) -> list[str]:
    found = config.get("architectures")
    return [str(a) for a in found] if isinstance(found, list) else []


def read_head(name: str, directory: Path, weights: Path | None, template: str | None = None) -> Head:
    """The head ``directory``'s files declare, or :class:`ModelError` when none crossrank runs.

    ``template`` names an LLM reranker's prompt-template family (the catalogue's or the
    user's): it lets a bare causal LM be scored, and picks the family of a LogitScore stack.
    Reads ``config.json``, ``modules.json`` and its modules' configs, and (for safetensors
    weights) the tensor names; imports nothing heavy.
    """
    config = read_json(directory / "config.json")
    found = _architectures(config)
    first = found[0] if found else None
    if (directory / "modules.json").is_file() and not any(a.endswith(SUPPORTED_HEAD) for a in found):
        if is_cross_encoder_stack(directory):
            if "LogitScore" in module_types(directory):
                return _llm_head(name, directory, first, template)
            head = Head("st-modules", first, read_stack(directory))
            return _no_template(name, head, template)
    if template is not None and found and all(a.endswith("ForCausalLM") for a in found):
        return _bare_llm_head(name, directory, found[0], template)
    if found and not any(a.endswith(SUPPORTED_HEAD) for a in found):
        raise refuse(
            name, directory,
            f"{name} is not a cross-encoder: its config.json declares {', '.join(found)}, which has no "
            f"trained relevance classifier (crossrank scores with a *{SUPPORTED_HEAD} head), so its scores "
            f"would come from a randomly initialised head. {_advice(found[0], directory)}",
        )
    names = safetensors_names(weights) if weights is not None else None
    if names is not None and not any(_is_head(n) for n in names):
        kind = ", ".join(found) if found else f"model_type {config.get('model_type', 'unknown')!r}"
        raise refuse(
            name, directory,
            f"{name} has no trained classifier weights: {weights.name if weights else 'its weights'} holds no "
            f"{'/'.join(sorted(HEAD_MODULES))} tensors ({kind}), so the relevance head would be randomly "
            f"initialised. Save the fine-tuned model with its head (save_pretrained), or rerank with a trained "
            f"cross-encoder such as {EXAMPLES}.",
        )
    return _no_template(name, Head("sequence-classification", first), template)


def _no_template(name: str, head: Head, template: str | None) -> Head:
    """``head``, unless a prompt template was named for a model that is not a causal LM."""
    if template is not None:
        raise ModelError(f"template={template!r} names an LLM reranker's prompt template, but {name} is not a causal "
                         f"LM: it scores with {head.describe()}. Drop the template option for this model.")
    return head


def _bare_llm_head(name: str, directory: Path, architecture: str, family: str) -> Head:
    """A causal LM without ``modules.json`` whose family was named: token ids from its tokenizer."""
    from crossrank.tokenize import load_tokenizer

    try:
        template = template_named(family)
        yes_id, no_id = token_ids(load_tokenizer(directory), template)
    except ModelError as exc:
        raise refuse(name, directory, f"{name} ({architecture}) with the {family!r} template: {exc}.") from exc
    return Head("llm-yes-no", architecture, template=template, yes_id=yes_id, no_id=no_id)


def _llm_head(name: str, directory: Path, architecture: str | None, family: str | None = None) -> Head:
    """A ``Transformer → LogitScore`` stack over a causal LM, with its family's template."""
    entries = read_modules(directory)
    types = module_types(directory)
    if types != ["Transformer", "LogitScore"] or not (architecture or "").endswith("ForCausalLM"):
        raise refuse(name, directory, f"{name} scores with LogitScore, but crossrank runs only a causal LM "
                     f"(*ForCausalLM) followed by LogitScore, not {' → '.join(types)} over {architecture}.")
    config = read_json(directory / str(entries[1].get("path", "")) / "config.json")
    true_id, false_id = config.get("true_token_id"), config.get("false_token_id")
    if not isinstance(true_id, int) or not (false_id is None or isinstance(false_id, int)):
        raise refuse(name, directory, f"{name}'s LogitScore config declares no integer true_token_id.")
    if config.get("module_input_name", "causal_logits") != "causal_logits":
        raise refuse(name, directory, f"{name}'s LogitScore reads {config['module_input_name']!r}, not causal_logits.")
    try:
        template = template_for(directory, true_id, false_id, family)
    except ModelError as exc:
        raise refuse(name, directory, str(exc) + ".") from exc
    return Head("llm-yes-no", architecture, template=template, yes_id=true_id, no_id=false_id)


def check_scoring_head(name: str, directory: Path, weights: Path | None) -> None:
    """Raise :class:`ModelError` unless the files declare a head crossrank runs (see :func:`read_head`)."""
    read_head(name, directory, weights)


def refuse_fresh_weights(name: str, missing: Collection[str], mismatched: Collection[object] = ()) -> None:
    """Raise :class:`ModelError` when transformers had to initialise weights the checkpoint lacks.

    ``missing`` and ``mismatched`` are transformers' loading report (``output_loading_info=True``).
    """
    fresh = sorted({str(key) for key in missing} | {str(key[0] if isinstance(key, tuple) else key) for key in mismatched})
    if not fresh:
        return
    head = [key for key in fresh if _is_head(key)]
    what = "no trained classifier weights" if head else "weights missing from its checkpoint"
    shown = ", ".join((head or fresh)[:6]) + (" ..." if len(head or fresh) > 6 else "")
    raise ModelError(
        f"{name} has {what}: transformers would initialise {shown} at random, so its scores would mean "
        f"nothing. Use a trained cross-encoder (a *{SUPPORTED_HEAD} model saved with its head), such as {EXAMPLES}."
    )
