"""Server configuration: the Metarank-style YAML file, and the settings flags override.

```yaml
inference:
  msmarco:
    type: cross-encoder
    model: cross-encoder/ms-marco-MiniLM-L6-v2   # hub id, catalogue alias, or file:///dir
  minilm:
    type: bi-encoder
    model: sentence-transformers/all-MiniLM-L6-v2
    dim: 384
```

Optional per-model keys: ``revision``, ``max_length``, ``long_documents`` (truncate|window),
``activation`` (sigmoid|none), ``mode`` (exact|fast|auto|int8, cross-encoders; see
:mod:`crossrank.runtime.select`), ``calibration`` (mode int8: a JSONL/TSV file of the pairs to calibrate
on; see :mod:`crossrank.runtime.calibration`), ``device`` (cpu|cuda), ``template`` (the prompt template of an LLM
yes/no reranker whose files do not name one: qwen3-reranker|mxbai-rerank-v2|bge-reranker-v2-gemma),
``trust_remote_code`` (true lets a model repository's own Python code run on this machine to load it;
see :mod:`crossrank.models.remote_code`) and ``instruction`` (the default instruction of an LLM
reranker, which a request's ``instruction`` field overrides; a model whose head reads none is
refused at start-up). An optional top-level ``server:`` mapping holds
``crossrank serve``'s flags, spelt with underscores (``max_documents: 500``); flags and environment
variables win over it, and an unknown key is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.extras import require
from crossrank.models.llm_head import TEMPLATES
from crossrank.options import check_instruction
from crossrank.runtime.select import MODES, check_threads
from crossrank.scheduler import BatchSettings

MODEL_TYPES = ("cross-encoder", "bi-encoder")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ModelEntry:
    """One named model to serve."""

    name: str
    type: str
    model: str
    dim: int | None = None
    revision: str | None = None
    max_length: int | None = None
    long_documents: str = "truncate"
    activation: str = "sigmoid"
    mode: str = "exact"
    device: str = "cpu"
    template: str | None = None  #: an LLM reranker's prompt template (see crossrank.models.llm_head)
    #: run the model repository's own Python code (auto_map) to load it; see crossrank.models.remote_code
    trust_remote_code: bool = False
    instruction: str | None = None  #: an LLM reranker's default instruction (None: its family's own)
    calibration: str | None = None  #: mode int8: the file of (query, document) pairs to calibrate on

    @property
    def providers(self) -> list[str] | None:
        return ["cuda"] if self.device == "cuda" else None


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``crossrank serve`` can be told, with its defaults."""

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_inflight_bytes: int = 128 * 1024 * 1024
    max_documents: int = 10000
    deadline_s: float = 30.0
    threads: int | None = None
    tokenizer_threads: int = 1
    cache_dir: str | None = None
    graceful_timeout_s: float = 30.0
    keep_alive_s: float = 75.0
    client_timeout_s: float = 60.0
    batch: BatchSettings = field(default_factory=BatchSettings)

    def __post_init__(self) -> None:
        def number(value: Any, whole: bool) -> bool:
            kinds = (int,) if whole else (int, float)
            return isinstance(value, kinds) and not isinstance(value, bool)

        if not number(self.port, True) or not 0 <= self.port <= 65535:
            raise InvalidInput(f"--port must be a whole number from 0 to 65535 (0: any free port), got {self.port!r}")
        for flag, count in (("--max-body-bytes", self.max_body_bytes), ("--max-inflight-bytes", self.max_inflight_bytes),
                            ("--max-documents", self.max_documents),
                            ("--tokenizer-threads", self.tokenizer_threads)):
            if not number(count, True) or count < 1:
                raise InvalidInput(f"{flag} must be a whole number >= 1, got {count!r}")
        for flag, seconds, zero_ok in (("--deadline", self.deadline_s, False),
                                     ("--keep-alive-timeout", self.keep_alive_s, False),
                                     ("--client-timeout", self.client_timeout_s, False),
                                     ("--graceful-timeout", self.graceful_timeout_s, True)):
            if not number(seconds, False) or seconds < 0 or (seconds == 0 and not zero_ok):
                raise InvalidInput(f"{flag} must be a number of seconds {'>= 0' if zero_ok else '> 0'}, got {seconds!r}")
        check_threads(self.threads)


def model_entry(name: str, raw: Any) -> ModelEntry:
    """One validated ``inference:`` entry (also built from ``crossrank serve --model``)."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"inference.{name} must be a mapping with 'type' and 'model'")
    kind = raw.get("type", "cross-encoder")
    if kind not in MODEL_TYPES:
        raise InvalidInput(f"inference.{name}.type must be one of {MODEL_TYPES}, not {kind!r}")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput(f"inference.{name}.model must be a hub id, alias or file:///dir")
    known = {f.name for f in dataclasses.fields(ModelEntry)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise InvalidInput(f"inference.{name} has unknown keys {sorted(unknown)}; known: {sorted(known)}")
    for key, allowed in (("mode", MODES), ("device", DEVICES)):
        if key in raw and raw[key] not in allowed:
            raise InvalidInput(f"inference.{name}.{key} must be one of {allowed}, not {raw[key]!r}")
    if raw.get("template") is not None and (kind != "cross-encoder" or raw["template"] not in TEMPLATES):
        raise InvalidInput(f"inference.{name}.template must be one of {', '.join(TEMPLATES)} on a cross-encoder, "
                           f"not {raw['template']!r}")
    if not isinstance(raw.get("trust_remote_code", False), bool):
        raise InvalidInput(f"inference.{name}.trust_remote_code must be true or false")
    if kind == "bi-encoder" and raw.get("mode", "exact") != "exact":
        raise InvalidInput(f"inference.{name}.mode: bi-encoders run in exact mode only")
    if raw.get("calibration") is not None and (not isinstance(raw["calibration"], str) or raw.get("mode") != "int8"):
        raise InvalidInput(f"inference.{name}.calibration is the path of a calibration file, used with 'mode: int8'")
    if kind == "bi-encoder" and raw.get("instruction") is not None:
        raise InvalidInput(f"inference.{name}.instruction: bi-encoders take no instruction (an LLM reranker does)")
    try:
        check_instruction(raw.get("instruction"))
    except InvalidInput as exc:
        raise InvalidInput(f"inference.{name}.{exc}") from None
    return ModelEntry(name=str(name), **{**raw, "type": kind})


def read_config(path: str | Path) -> tuple[list[ModelEntry], dict[str, Any]]:
    """The models of a YAML config file, and its optional ``server:`` settings."""
    yaml = require("yaml", "server", "Reading the server's YAML config")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("inference"), dict) or not data["inference"]:
        raise InvalidInput(f"config {path} needs an 'inference:' mapping of model names to models")
    entries = [model_entry(name, raw) for name, raw in data["inference"].items()]
    server = data.get("server") or {}
    if not isinstance(server, dict):
        raise InvalidInput(f"config {path}: 'server' must be a mapping")
    return entries, server
