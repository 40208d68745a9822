"""``crossrank serve``: the inference server (Metarank, Cohere/Jina, TEI, Weaviate, OpenAI formats)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
from typing import Any

from crossrank.cli.serve_settings import FILE_KEYS, SETTINGS, add_arguments, build_settings, resolve_options
from crossrank.errors import InvalidInput
from crossrank.extras import require

__all__ = ["FILE_KEYS", "SETTINGS", "build_settings", "register", "resolve_options", "run"]

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve models over HTTP (Metarank, Cohere/Jina, TEI, Weaviate, OpenAI formats)",
        description=(
            "Load the configured models, warm them up, then serve them over HTTP with dynamic "
            "batching across requests. Every flag can also be set by the environment variable "
            "named in its help; a flag wins over the variable, which wins over the config file's "
            "'server:' section (the flag's name with underscores, e.g. max_documents: 500).\n\n"
            "examples:\n"
            "  crossrank serve --config examples/config.yaml\n"
            "  crossrank serve --model cross-encoder/ms-marco-MiniLM-L6-v2 --port 8080"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _claim_address(host: str, port: int) -> socket.socket:
    """Bind the address before the models load (a first download takes minutes), so that a taken
    port or an unknown host fails at once. Connections are refused until the server listens."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                           f"choose another --port, or a --host this machine has") from None
    return sock


class _StopStarting(BaseException):
    """SIGTERM arrived while the models were loading (a BaseException: no handler may swallow it)."""


def _stop_starting(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not cut the clean-up short
    raise _StopStarting


def run(args: argparse.Namespace) -> int:
    # SIGTERM while loading (a first start may export a model for minutes) unwinds like an
    # exception: an export child is stopped and half-written files are removed on the way out
    signal.signal(signal.SIGTERM, _stop_starting)
    try:
        return _run(args)
    except _StopStarting:
        print("crossrank: stopped during start-up (SIGTERM)", file=sys.stderr, flush=True)
        return 0


def _run(args: argparse.Namespace) -> int:
    uvicorn = require("uvicorn", "server", "crossrank serve")
    require("fastapi", "server", "crossrank serve")
    from crossrank.retrieval.index import Index
    from crossrank.server.app import create_app
    from crossrank.server.config import ModelEntry, model_entry, read_config
    from crossrank.server.connections import protocol_class, raise_open_files_limit
    from crossrank.server.drain import DrainingServer
    from crossrank.server.metrics import Metrics
    from crossrank.server.state import load_served_models

    given = resolve_options(args, os.environ, {})  # the flags and environment; the file comes next
    config, model = given["config"], given["model"]
    if config and model:
        raise InvalidInput("pass either --config or --model, not both")
    per_model = ("mode", "calibration", "device", "template", "trust_remote_code", "instruction")
    if config and any(getattr(args, key) is not None for key in per_model):
        raise InvalidInput("--mode, --calibration, --device, --template, --trust-remote-code and --instruction go with "
                           "--model; in a config file set 'mode:', 'calibration:', 'device:', 'template:', "
                           "'trust_remote_code:' and 'instruction:' per model")
    entries: list[ModelEntry]
    file_options: dict[str, Any] = {}
    if config:
        entries, file_options = read_config(config)
    elif model:
        entry = {"type": "cross-encoder", "model": model, **{key: given[key] for key in per_model}}
        entries = [model_entry(given["name"], entry)]
    else:
        raise InvalidInput("nothing to serve: pass --config FILE or --model NAME")
    options = resolve_options(args, os.environ, file_options)
    settings = build_settings(options)
    drain_s = float(options["drain_seconds"])
    if drain_s < 0:
        raise InvalidInput("--drain-seconds must not be negative")
    sock = _claim_address(settings.host, settings.port)
    files = raise_open_files_limit()  # one per client connection
    log.debug("open files limit: %s", files)
    if not settings.api_key and not _is_loopback(settings.host):
        log.warning("no API key: anyone who can reach %s:%d can use this server (set --api-key)",
                    settings.host, settings.port)
    metrics = Metrics()
    print(f"crossrank: loading {len(entries)} model(s): {', '.join(e.name for e in entries)}", flush=True)
    from crossrank.server import search as search_route
    from crossrank.server.app import DEFAULT_ROUTERS

    search_entries = search_route.read_search_config(config) if config else []
    search_route.check_rerankers(search_entries, [(e.name, e.model) for e in entries if e.type == "cross-encoder"])
    for search_entry in search_entries:  # fail on a missing or damaged index before the models load (minutes)
        Index.open(search_entry.index).close()
    models = load_served_models(entries, settings, observer=metrics.observer)
    try:
        search_indexes = search_route.open_search_indexes(
            search_entries, served=[(b.entry.model, b.encoder) for b in models.bi.values()],
            cache_dir=settings.cache_dir)
    except BaseException:
        models.close()
        raise
    app = create_app(models, settings, metrics=metrics, routers=(*DEFAULT_ROUTERS, search_route.build_router))
    app.state.search = search_indexes
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"crossrank: serving on http://{host}:{port}", flush=True)
    # uvicorn handles SIGTERM (stop accepting, finish in-flight requests), then re-raises it to
    # the handler found at start: make that one a no-op so a graceful shutdown exits 0
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server = DrainingServer(uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=settings.graceful_timeout_s,
        timeout_keep_alive=settings.keep_alive_s, http=protocol_class(settings.client_timeout_s), access_log=False),
        app, drain_s)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C, after uvicorn's graceful shutdown
        pass
    if not server.started:
        print("crossrank: the server failed to start (see the error above)", file=sys.stderr, flush=True)
        return 1
    print("crossrank: stopped", flush=True)
    return 0
