"""Custom-code models: Python shipped in a model repository runs only when the user says so.

A ``config.json`` (or ``tokenizer_config.json``) whose ``auto_map`` names classes such as
``modeling_xlm_roberta.XLMRobertaForSequenceClassification`` or
``Alibaba-NLP/new-impl--modeling.NewForSequenceClassification`` asks transformers to import Python
files from the model repository (or from another repository) and run them on this machine.
crossrank never does that silently: every ``from_pretrained`` goes through :func:`from_pretrained`,
which refuses such a model with a :class:`ModelError` unless the caller opted in with
``trust_remote_code=True`` (``--trust-remote-code`` on the command line, ``trust_remote_code: true``
in a server model entry).

A repository that ships an ONNX file (jina-reranker-v1/v2's ``onnx/model.onnx``) needs no opt-in:
the graph is run as it is and no Python from the repository is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossrank.errors import ModelError
from crossrank.models.config import read_json

#: what the opt-in means, for help texts and error messages
MEANING = (
    "imports and runs the Python code that the model repository ships (its config.json 'auto_map'), "
    "with this process's permissions on this machine; use it only for repositories you trust"
)
#: how to give the opt-in, everywhere crossrank loads a model
HOW = "pass trust_remote_code=True (Reranker/Encoder), --trust-remote-code (CLI) or 'trust_remote_code: true' (server config)"


def remote_code(directory: Path) -> dict[str, str]:
    """The ``auto_map`` entries of the model's config and tokenizer config (empty: no custom code)."""
    found: dict[str, str] = {}
    for name in ("config.json", "tokenizer_config.json"):
        path = directory / name
        if not path.is_file():
            continue
        auto_map = read_json(path).get("auto_map")
        if isinstance(auto_map, dict):
            for key, value in auto_map.items():
                found[str(key)] = ", ".join(str(v) for v in value if v) if isinstance(value, list) else str(value)
    return found


def check_remote_code(name: str, directory: Path, trust_remote_code: bool) -> None:
    """Raise :class:`ModelError` when ``directory`` declares custom code and ``trust_remote_code`` is not set."""
    if trust_remote_code is True:
        return
    if not isinstance(trust_remote_code, bool):
        raise ModelError(f"trust_remote_code must be True or False, not {trust_remote_code!r}")
    found = remote_code(directory)
    if found:
        shown = "; ".join(f"{key} -> {value}" for key, value in sorted(found.items()))
        raise ModelError(
            f"{name} needs custom code from its repository (auto_map: {shown}). crossrank does not run "
            f"code from a model repository unless asked: {HOW}. The opt-in {MEANING}. A repository that ships "
            f"an ONNX file (onnx/model.onnx) runs without it."
        )


def from_pretrained(auto: Any, directory: Path, trust_remote_code: bool, **kwargs: Any) -> Any:
    """``auto.from_pretrained(directory, ...)``, refused for custom code unless ``trust_remote_code``."""
    check_remote_code(str(directory), directory, trust_remote_code)
    return auto.from_pretrained(str(directory), trust_remote_code=trust_remote_code, **kwargs)
