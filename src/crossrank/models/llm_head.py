"""LLM yes/no rerankers: a prompt template around (instruction, query, document) and a one-row head.

A causal LM reranker scores a pair by the logits of its last prompt token: ``logit(yes) −
logit(no)``. Only that row of the vocabulary projection matters, so the export keeps the
hidden state of each row's last real token and multiplies it by ``W_lm[yes] − W_lm[no]``
(fp32): one logit per pair, as any cross-encoder, and never the vocabulary projection.

The template is applied by the tokenizer's pair post-processor: the prefix and the suffix are
fixed token runs around ``$A`` (instruction and query) and ``$B`` (the document), so only the
document is ever truncated and the suffix always survives (see :class:`~crossrank.tokenize.PairTokenizer`).

Qwen3-Reranker (its model card's transformers sample): the system prefix below, the body
``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}``, the assistant suffix with
the empty think block, tokens ``yes``/``no``. The card's two samples differ in the new lines of
the think block; the transformers sample (``<think>\\n\\n</think>\\n\\n``) is followed. The body is
split before the document's leading space: byte-level BPE pre-tokenizes ``: doc`` as ``:`` and
`` doc``, so the two halves tokenize as the whole body does (a document starting with a line
break is the one exception: the card's tokenizer merges it with the colon).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, processors

from crossrank.errors import ModelError
from crossrank.models.config import read_json


@dataclass(frozen=True)
class YesNoTemplate:
    """One LLM reranker family's prompt and scoring tokens."""

    family: str
    prefix: str
    query: str  #: formats ``instruction`` and ``query``; ends right before the document's leading space
    document: str  #: formats ``document``
    suffix: str
    yes: str
    no: str | None  #: ``None``: the score is the logit of ``yes`` alone
    default_instruction: str

    def format_pair(self, query: str, document: str, instruction: str | None = None) -> tuple[str, str]:
        return (self.query.format(instruction=instruction or self.default_instruction, query=query),
                self.document.format(document=document))


QWEN3_RERANKER = YesNoTemplate(
    family="qwen3-reranker",
    prefix=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    ),
    query="<Instruct>: {instruction}\n<Query>: {query}\n<Document>:",
    document=" {document}",
    suffix="<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    yes="yes",
    no="no",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
)
#: templates by the ``model_type`` of the causal LM
TEMPLATES = {"qwen3": QWEN3_RERANKER}


def single_token(tokenizer: Tokenizer, text: str) -> int:
    """The id of ``text`` as one token of ``tokenizer``; :class:`ModelError` when it is not one."""
    token_id = tokenizer.token_to_id(text)
    if token_id is None:
        raise ModelError(f"the tokenizer has no single token {text!r} to score with")
    return int(token_id)


def template_for(directory: Path, true_id: int, false_id: int | None) -> YesNoTemplate:
    """The family template of a causal LM whose LogitScore module reads ``true_id``/``false_id``.

    The template's tokens must be the ids the model's own files declare, or it is refused.
    """
    model_type = str(read_json(directory / "config.json").get("model_type", "unknown"))
    template = TEMPLATES.get(model_type)
    if template is None:
        raise ModelError(
            f"{directory}: an LLM yes/no reranker of model_type {model_type!r}; crossrank knows the prompt "
            f"templates of {', '.join(t.family for t in TEMPLATES.values())} only"
        )
    from crossrank.tokenize import load_tokenizer

    tokenizer = load_tokenizer(directory)
    expected = (single_token(tokenizer, template.yes), single_token(tokenizer, template.no) if template.no else None)
    if expected != (true_id, false_id):
        raise ModelError(
            f"{directory}: its LogitScore scores token ids {(true_id, false_id)}, but the {template.family} template "
            f"scores {template.yes!r}/{template.no!r} = {expected}; refusing to guess which is right"
        )
    return template


def template_tokenizer(tokenizer: Tokenizer, template: YesNoTemplate) -> Tokenizer:
    """``tokenizer`` whose pair post-processor wraps (``$A`` query side, ``$B`` document) in the template."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    runs = []
    for name, text in (("[crossrank-prefix]", template.prefix), ("[crossrank-suffix]", template.suffix)):
        encoding = tok.encode(text, add_special_tokens=False)
        runs.append({"id": name, "ids": encoding.ids, "tokens": encoding.tokens})
    tok.post_processor = processors.TemplateProcessing(
        single="$A", pair="[crossrank-prefix] $A:0 $B:1 [crossrank-suffix]", special_tokens=runs
    )
    return tok
