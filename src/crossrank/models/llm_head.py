"""LLM yes/no rerankers: a prompt template around (instruction, query, document) and a one-row head.

A causal LM reranker scores a pair by the logits of its last prompt token: ``logit(yes) −
logit(no)``, or ``logit(yes)`` alone. Only that row of the vocabulary projection matters, so
the export keeps the hidden state of each row's last real token and multiplies it by
``W_lm[yes] − W_lm[no]`` (fp32): one logit per pair, as any cross-encoder, and never the
vocabulary projection.

The template is applied by the tokenizer's pair post-processor: the prefix, the separator
and the suffix are fixed token runs around ``$A`` (the query side) and ``$B`` (the
document), so only the document is ever truncated and the suffix always survives (see
:class:`~crossrank.tokenize.PairTokenizer`). Each fixed part is a tuple of pieces tokenized
one by one, as the reference implementations tokenize them.

Families (:data:`TEMPLATES`, keyed by family name) and where each string comes from:

* ``qwen3-reranker`` (Qwen3-Reranker-0.6B/4B/8B, model card's transformers sample): the system
  prefix below, the body ``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}``,
  the assistant suffix with the empty think block, tokens ``yes``/``no``. The card's two
  samples differ in the new lines of the think block; the transformers sample
  (``<think>\\n\\n</think>\\n\\n``) is followed. The body is split before the document's
  leading space: byte-level BPE pre-tokenizes ``: doc`` as ``:`` and `` doc``, so the two
  halves tokenize as the whole body does (a document starting with a line break is the one
  exception: the card's tokenizer merges it with the colon).
* ``mxbai-rerank-v2`` (mxbai-rerank-base-v2 / -large-v2, the ``mxbai-rerank`` package 0.1.6,
  ``MxbaiRerankV2``): the Qwen chat prefix ``<|im_start|>system\\nYou are Qwen, created by
  Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n``, then the query
  side ``query: {query}`` (with an instruction: ``instruction: {instruction}\\nquery: {query}``,
  one text; there is no default instruction), the separator ``\\n``, ``document: {document}``,
  ``\\n``, its task prompt, and ``<|im_end|>\\n<|im_start|>assistant\\n``; each of these
  tokenized alone; score ``logit("1") − logit("0")`` (its ``yes_loc``/``no_loc``).
* ``bge-reranker-v2-gemma`` (BAAI/bge-reranker-v2-gemma, FlagEmbedding's ``BaseLLMReranker``
  in ``inference/reranker/decoder_only/base.py``): BOS, ``A: {query}``, the separator ``\\n``,
  ``B: {document}``, then ``\\n`` and the prompt, each tokenized alone; the score is the
  logit of ``Yes`` alone, no post-processing. Its instruction is that trailing prompt (the
  ``prompt=`` argument of ``compute_score``): a custom instruction replaces it.

Limits: crossrank's ``max_length`` counts every token of the prompt, fixed parts included
(as Qwen3's card does). mxbai caps (query side, separator, document) at its ``max_length`` and
adds the fixed parts on top; FlagEmbedding cuts ``B: {document}`` to its ``max_length`` tokens
(the pair part to that plus the trailing parts) and adds BOS, query and the fixed parts on top.
A crossrank ``max_length`` equal to the total the reference keeps cuts the same document
tokens. A query side that does not fit is refused rather than cut (the references cut it to
3/4 of their limit).

A repository in the sentence-transformers layout declares its head (``modules.json``:
Transformer → LogitScore with token ids); its family follows from the model_type
(:data:`FAMILY_OF_MODEL_TYPE`) or the user's choice, and the declared ids must be the
family's tokens. A bare causal LM (the original hub layout) declares nothing: its family
comes from the catalogue or from the user (``template=``), and its ids from the tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, processors

from crossrank.errors import ModelError
from crossrank.models.config import read_json


@dataclass(frozen=True)
class YesNoTemplate:
    """One LLM reranker family's prompt and scoring tokens."""

    family: str
    prefix: tuple[str, ...]  #: pieces before the query side, each tokenized alone
    query: str  #: formats ``query`` and ``instruction`` (the formatted instruction, or ``""``)
    separator: tuple[str, ...]  #: pieces between the query side and the document
    document: str  #: formats ``document``
    suffix: tuple[str, ...]  #: pieces after the document; may format ``instruction``
    yes: str
    no: str | None  #: ``None``: the score is the logit of ``yes`` alone
    default_instruction: str | None
    instruction_format: str = "{instruction}"  #: how a given instruction enters its slot

    @property
    def instruction_in_fixed_parts(self) -> bool:
        """True when the instruction sits in the prefix, separator or suffix (bge-reranker-v2-gemma's
        trailing prompt): another instruction needs another tokenizer, not another query text."""
        return any("{instruction}" in piece for part in (self.prefix, self.separator, self.suffix) for piece in part)

    def instruction_text(self, instruction: str | None) -> str:
        """What fills the ``{instruction}`` slot: the formatted instruction, or ``""`` without one."""
        chosen = instruction or self.default_instruction
        return self.instruction_format.format(instruction=chosen) if chosen else ""

    def format_pair(self, query: str, document: str, instruction: str | None = None) -> tuple[str, str]:
        return (self.query.format(instruction=self.instruction_text(instruction), query=query),
                self.document.format(document=document))

    def fixed_parts(self, instruction: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The prefix, separator and suffix pieces, the instruction filled in where the family puts it."""
        slot = self.instruction_text(instruction)
        prefix, separator, suffix = (tuple(p.format(instruction=slot) for p in part)
                                     for part in (self.prefix, self.separator, self.suffix))
        return prefix, separator, suffix


QWEN3_RERANKER = YesNoTemplate(
    family="qwen3-reranker",
    prefix=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n',
    ),
    query="<Instruct>: {instruction}\n<Query>: {query}\n<Document>:",
    separator=(),
    document=" {document}",
    suffix=("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",),
    yes="yes",
    no="no",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
)
MXBAI_RERANK_V2 = YesNoTemplate(
    family="mxbai-rerank-v2",
    prefix=("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n",),
    query="{instruction}query: {query}",
    separator=("\n",),
    document="document: {document}",
    suffix=("\n",
            "You are a search relevance expert who evaluates how well documents match search queries. For each "
            "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
            "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:",
            "<|im_end|>\n<|im_start|>assistant\n"),
    yes="1",
    no="0",
    default_instruction=None,
    instruction_format="instruction: {instruction}\n",
)
BGE_RERANKER_GEMMA = YesNoTemplate(
    family="bge-reranker-v2-gemma",
    prefix=("<bos>",),
    query="A: {query}",
    separator=("\n",),
    document="B: {document}",
    suffix=("\n", "{instruction}"),
    yes="Yes",
    no=None,
    default_instruction="Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'.",
)
#: templates by family name: what ``template=`` and the catalogue's ``template`` name
TEMPLATES = {t.family: t for t in (QWEN3_RERANKER, MXBAI_RERANK_V2, BGE_RERANKER_GEMMA)}
#: the family of a ``modules.json`` LogitScore repo, by its causal LM's ``model_type``
FAMILY_OF_MODEL_TYPE = {"qwen3": "qwen3-reranker", "qwen2": "mxbai-rerank-v2",
                        "gemma": "bge-reranker-v2-gemma", "gemma2": "bge-reranker-v2-gemma"}
_SPECIAL = re.compile(r"<[^<>\s]+>")


def template_named(family: str) -> YesNoTemplate:
    """The template of ``family``; :class:`ModelError` naming the known ones otherwise."""
    template = TEMPLATES.get(family) if isinstance(family, str) else None
    if template is None:
        raise ModelError(f"unknown LLM reranker template {family!r}; crossrank knows {', '.join(TEMPLATES)}")
    return template


def single_token(tokenizer: Tokenizer, text: str) -> int:
    """The id of ``text`` as one token of ``tokenizer``; :class:`ModelError` when it is not one."""
    token_id = tokenizer.token_to_id(text)
    if token_id is None:
        raise ModelError(f"the tokenizer has no single token {text!r} to score with")
    return int(token_id)


def token_ids(tokenizer: Tokenizer, template: YesNoTemplate) -> tuple[int, int | None]:
    """The ids of the template's scoring tokens in ``tokenizer``."""
    return single_token(tokenizer, template.yes), single_token(tokenizer, template.no) if template.no else None


def template_for(directory: Path, true_id: int, false_id: int | None, family: str | None = None) -> YesNoTemplate:
    """The template of a causal LM whose LogitScore module reads ``true_id``/``false_id``.

    The family is ``family`` when given, else the one of the config's ``model_type``. The
    template's tokens must be the ids the model's own files declare, or it is refused.
    """
    model_type = str(read_json(directory / "config.json").get("model_type", "unknown"))
    family = family or FAMILY_OF_MODEL_TYPE.get(model_type)
    if family is None:
        raise ModelError(
            f"{directory}: an LLM yes/no reranker of model_type {model_type!r}; crossrank knows the prompt "
            f"templates of model types {', '.join(FAMILY_OF_MODEL_TYPE)} (families {', '.join(TEMPLATES)}); "
            f"name the family with template=... if it is one of them"
        )
    template = template_named(family)
    from crossrank.tokenize import load_tokenizer

    expected = token_ids(load_tokenizer(directory), template)
    if expected != (true_id, false_id):
        raise ModelError(
            f"{directory}: its LogitScore scores token ids {(true_id, false_id)}, but the {template.family} template "
            f"scores {template.yes!r}/{template.no!r} = {expected}; refusing to guess which is right"
        )
    return template


def _run(tok: Tokenizer, name: str, pieces: tuple[str, ...]) -> dict[str, object]:
    ids: list[int] = []
    tokens: list[str] = []
    for piece in pieces:
        if name == "[crossrank-prefix]" and _SPECIAL.fullmatch(piece):  # BOS by name: the tokenizer must have it
            token_id = single_token(tok, piece)
            ids.append(token_id)
            tokens.append(piece)
            continue
        encoding = tok.encode(piece, add_special_tokens=False)
        ids += encoding.ids
        tokens += encoding.tokens
    return {"id": name, "ids": ids, "tokens": tokens}


def template_tokenizer(tokenizer: Tokenizer, template: YesNoTemplate, instruction: str | None = None) -> Tokenizer:
    """``tokenizer`` whose pair post-processor wraps (``$A`` query side, ``$B`` document) in the template.

    ``instruction`` matters to families that put it in a fixed part (bge-reranker-v2-gemma's
    trailing prompt); ``tokenizer`` may already carry a template (it is replaced).
    """
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    parts = template.fixed_parts(instruction)
    names = ("[crossrank-prefix]", "[crossrank-separator]", "[crossrank-suffix]")
    runs = [_run(tok, name, pieces) for name, pieces in zip(names, parts) if pieces]
    present = {str(run["id"]) for run in runs}
    layout = " ".join(part for part in (
        names[0] if names[0] in present else "", "$A:0", names[1] if names[1] in present else "", "$B:1",
        names[2] if names[2] in present else "") if part)
    tok.post_processor = processors.TemplateProcessing(single="$A", pair=layout, special_tokens=runs)
    return tok
