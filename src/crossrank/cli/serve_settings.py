"""Every ``crossrank serve`` setting, declared once.

Each :class:`Setting` gives the flag (``--max-body-bytes``), the environment variable
(``CROSSRANK_MAX_BODY_BYTES``), the key of the config file's ``server:`` section
(``max_body_bytes``), the default and the help text; :func:`add_arguments`,
:func:`resolve_options` and :func:`build_settings` are generated from :data:`SETTINGS`, so a new
setting is one more entry there. A flag wins over the environment, which wins over the file,
which wins over the default.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crossrank.errors import InvalidInput
from crossrank.models.llm_head import TEMPLATES
from crossrank.models.remote_code import MEANING
from crossrank.runtime.select import MODES

DEFAULT_NAME = "default"
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Setting:
    """One server setting: where it can be given, its default, and what it trades off."""

    name: str  #: the attribute of the parsed options and, when ``file``, the ``server:`` key
    type: type  #: str, int, float or bool (a bool is a flag without a value)
    default: Any
    help: str  #: the trade-off; the default and the environment variable are appended
    group: str
    #: the environment variable, derived from ``name`` unless given; "" for none
    env: str | None = None
    file: bool = True  #: settable in the config file's ``server:`` section
    choices: tuple[str, ...] | None = None
    shown_default: str | None = None  #: how --help names the default when the value alone says too little
    #: the :class:`~crossrank.server.config.ServerSettings` attribute it sets ("batch." for its batching
    #: settings, a leading "!" for the negation); None: used by ``crossrank serve`` itself
    field: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str | None:
        if self.env == "":
            return None
        return self.env or "CROSSRANK_" + self.name.upper()

    def help_text(self) -> str:
        if self.shown_default is not None:
            shown = self.shown_default
        elif self.default is None:
            shown = "none"
        elif isinstance(self.default, float):
            shown = f"{self.default:g}"
        else:
            shown = str(self.default)
        text = f"{self.help} (default: {shown})"
        if self.variable:
            text += f" [{self.variable}=1]" if self.type is bool else f" [{self.variable}]"
        return text

    def parse_env(self, raw: str) -> Any:
        if self.type is bool:
            return raw.strip().lower() in ("1", "true", "yes")
        try:
            value = self.type(raw)
        except ValueError:
            raise InvalidInput(f"environment variable {self.variable}={raw!r} is not a valid "
                               f"{self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise InvalidInput(f"environment variable {self.variable}={raw!r} must be one of {', '.join(self.choices)}")
        return value


_FOR_MODEL = "for --model: "
_PER_MODEL = "In a config file: the per-model key"

SETTINGS: tuple[Setting, ...] = (
    # -- models
    Setting("config", str, None, "YAML file with an 'inference:' mapping of names to models (see "
            "examples/config.yaml)", "models", file=False),
    Setting("model", str, None, "serve this one cross-encoder (hub id, alias or directory) instead of a config "
            "file", "models", file=False),
    Setting("name", str, DEFAULT_NAME, "the name --model is served under", "models", env="CROSSRANK_MODEL_NAME",
            file=False),
    Setting("mode", str, "exact", _FOR_MODEL + "exact (fp32, the model's own scores), fast (bf16 on CPUs with "
            "AMX/AVX-512 BF16, fp16 on a GPU; same ranking), auto (fast where it measured faster) or int8 (int8 "
            f"calibrated on --calibration, the ranking kept, the faster engine measured here; CPU). {_PER_MODEL} 'mode'",
            "models", file=False, choices=MODES),
    Setting("calibration", str, None, "for --model --mode int8: (query, document) pairs to calibrate on, JSON "
            f"Lines or TSV (see docs/MODELS.md). {_PER_MODEL} 'calibration'", "models", file=False),
    Setting("device", str, "cpu", _FOR_MODEL + "cuda runs it on an NVIDIA GPU (needs 'crossrank[torch]' with a "
            f"CUDA build of torch). {_PER_MODEL} 'device'", "models", file=False, choices=DEVICES),
    Setting("template", str, None, _FOR_MODEL + "the prompt template of an LLM yes/no reranker whose files do not "
            f"name one and that the catalogue does not know. {_PER_MODEL} 'template'", "models", env="",
            file=False, choices=tuple(TEMPLATES)),
    Setting("trust_remote_code", bool, False, _FOR_MODEL + "allow a model whose repository ships its own "
            f"modelling code: this {MEANING}. {_PER_MODEL} 'trust_remote_code: true'", "models", env="", file=False,
            shown_default="such models are refused; a repository's ONNX file never needs it"),
    Setting("instruction", str, None, _FOR_MODEL + "the default instruction in an LLM reranker's prompt (e.g. "
            "Qwen3-Reranker); a request's 'instruction' field overrides it. Refused at start-up for a model whose "
            f"head reads no instruction. {_PER_MODEL} 'instruction'", "models", file=False,
            shown_default="the model family's own"),
    Setting("cache_dir", str, None, "where hub downloads and ONNX exports are cached, for the served models and "
            "the query encoder of a dense 'search:' index", "models", shown_default="the Hugging Face cache",
            field="cache_dir"),
    # -- network
    Setting("host", str, "127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network, so set an API "
            "key there", "network", field="host"),
    Setting("port", int, 8080, "TCP port; 0 picks a free one, printed at start", "network", field="port"),
    Setting("api_key", str, None, "require 'Authorization: Bearer KEY' on inference routes; health, readiness and "
            "metrics stay open", "network", field="api_key"),
    # -- limits
    Setting("max_body_bytes", int, 10 * 1024 * 1024, "largest request body; bigger gets 413", "limits",
            field="max_body_bytes"),
    Setting("max_inflight_bytes", int, 128 * 1024 * 1024, "request bodies held at once, summed over the requests "
            "being read, parsed or scored; beyond it a new request gets 429 before its body is read. A parsed body "
            "takes about 4 times its size, so this bounds what a burst of large requests costs in memory; a request "
            "alone always runs", "limits", field="max_inflight_bytes"),
    Setting("max_documents", int, 10000, "most pairs or texts in one request; more gets 413. Large requests are "
            "split into batches internally", "limits", field="max_documents"),
    Setting("max_queue", int, 20000, "pairs admitted per model and not yet scored (a document cut into windows "
            "counts each window); beyond it requests get 429 at once. Higher absorbs bursts, but queued work waits "
            "longer", "limits", field="batch.max_queue"),
    Setting("deadline", float, 30.0, "seconds a request may take before 504 and cancellation; clients can lower "
            "or raise it with the X-Request-Timeout header", "limits", field="deadline_s"),
    Setting("graceful_timeout", float, 30.0, "seconds SIGTERM waits for in-flight requests", "limits",
            field="graceful_timeout_s"),
    Setting("drain_seconds", float, 0.0, "at SIGTERM, seconds the readiness routes answer 503 while requests are "
            "still served, before the graceful shutdown starts: set it longer than your load balancer's "
            "health-check interval times its fall count so it stops routing first", "limits"),
    Setting("keep_alive_timeout", float, 75.0, "seconds an idle keep-alive connection stays open. Keep it longer "
            "than your clients' and load balancers' idle timeouts (httpx: 5, AWS ALB: 60) so they close first: a "
            "server that closes first can race a request sent at that moment, which the client sees as a reset. "
            "Costs one idle socket per client", "limits", field="keep_alive_s"),
    Setting("client_timeout", float, 60.0, "seconds a client has to send a whole request, headers and body, from "
            "its first byte (slower gets 408 and the connection is closed), and the longest it may go without "
            "reading any of its answer (then it is disconnected and the answer dropped), so stalled clients hold "
            "neither sockets nor memory. At 60, a 10 MB body needs about 1.4 Mbit/s", "limits",
            field="client_timeout_s"),
    # -- batching
    Setting("batch_size", int, 32, "most pairs per model call; larger amortises overhead but waits for and pads "
            "more", "batching", field="batch.batch_size"),
    Setting("max_batch_tokens", int, None, "most tokens per model call, padding counted (rows x longest row); "
            "smaller keeps activations in the CPU caches and bounds memory and the wait of a request arriving "
            "meanwhile, larger amortises overhead", "batching", field="batch.max_batch_tokens",
            shown_default="the runtime's: 384 per thread on ONNX Runtime CPU, 1024 per thread on OpenVINO, 65536 "
            "on a GPU"),
    Setting("window", int, 256, "pairs looked at ahead and sorted by length before packing; larger pads less but "
            "is less first-come-first-served", "batching", field="batch.lookahead"),
    Setting("no_batching", bool, False, "never mix requests in one batch (slower under concurrency; for "
            "comparison)", "batching", field="!batch.batching"),
    Setting("threads", int, None, "ONNX Runtime threads per model call; fewer leaves cores for tokenization and "
            "HTTP", "batching", shown_default="all cores", field="threads"),
    Setting("tokenizer_threads", int, 1, "threads tokenizing while the model runs", "batching",
            field="tokenizer_threads"),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}

#: what a config file's ``server:`` section may set (the models come from ``inference:``)
FILE_KEYS = tuple(sorted(s.name for s in SETTINGS if s.file))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting, in its group. Every default is None: :func:`resolve_options`
    fills in the environment, the file and the declared default, in that order."""
    groups: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(setting.group)
        group = groups[setting.group]
        if setting.type is bool:
            group.add_argument(setting.flag, action="store_true", default=None, help=setting.help_text())
        else:
            group.add_argument(setting.flag, type=setting.type, choices=setting.choices, help=setting.help_text())


def resolve_options(args: argparse.Namespace, env: Mapping[str, str], file: Mapping[str, Any]) -> dict[str, Any]:
    """Each setting from the flag, else the environment, else the config's ``server:`` section,
    else its declared default.

    An unknown key in ``server:`` is refused (a misspelt setting would otherwise be ignored).
    """
    unknown = sorted(str(key) for key in file if key not in FILE_KEYS)
    if unknown:
        raise InvalidInput(f"unknown key(s) {unknown} under 'server:' in the config; known: {', '.join(FILE_KEYS)}")
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        value = getattr(args, setting.name, None)
        if value is None and setting.variable and setting.variable in env:
            value = setting.parse_env(env[setting.variable])
        if value is None and setting.file:
            value = file.get(setting.name)
        out[setting.name] = setting.default if value is None else value
    return out


def build_settings(options: Mapping[str, Any]) -> Any:
    """The :class:`~crossrank.server.config.ServerSettings` the resolved ``options`` describe."""
    from crossrank.scheduler import BatchSettings
    from crossrank.server.config import ServerSettings

    top: dict[str, Any] = {}
    batch: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field is None:
            continue
        value = options.get(setting.name, setting.default)
        path = setting.field.removeprefix("!")
        if path != setting.field:
            value = not value
        if path.startswith("batch."):
            batch[path.removeprefix("batch.")] = value
        else:
            top[path] = value
    top["api_key"] = top.get("api_key") or None  # an empty key (e.g. CROSSRANK_API_KEY=) is no key
    return ServerSettings(**top, batch=BatchSettings(**batch))

