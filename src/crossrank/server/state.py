"""The loaded models and their schedulers, looked up by the names the config gives them.

A request's ``model`` field only ever selects among configured models (by name, or by the
hub id / alias the config loaded): nothing a client sends is ever loaded from disk or the hub.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from crossrank.encode import Encoder
from crossrank.errors import CrossrankError, InvalidInput, ModelError, ModelLoadFailed, ModelNotFound
from crossrank.rerank import Reranker
from crossrank.scheduler import BatchObserver, CrossScheduler, EncoderScheduler
from crossrank.server.config import ModelEntry, ServerSettings

log = logging.getLogger(__name__)


@dataclass
class CrossModel:
    entry: ModelEntry
    reranker: Reranker
    scheduler: CrossScheduler


@dataclass
class BiModel:
    entry: ModelEntry
    encoder: Encoder
    scheduler: EncoderScheduler


class ServedModels:
    """Named cross-encoders and bi-encoders; the first of each kind is the default."""

    def __init__(self, cross: list[CrossModel], bi: list[BiModel]) -> None:
        self.cross = {m.entry.name: m for m in cross}
        self.bi = {m.entry.name: m for m in bi}

    def names(self) -> list[str]:
        return [*self.cross, *self.bi]

    def _find(self, table: dict[str, Any], name: str | None, kind: str) -> Any:
        if not table:
            raise ModelNotFound(f"no {kind} is configured on this server; models: {self.names()}")
        if name is None or name == "":
            return next(iter(table.values()))
        if name in table:
            return table[name]
        for model in table.values():  # the hub id or alias the config named
            if name == model.entry.model:
                return model
        raise ModelNotFound(f"model {name!r} is not served here; {kind} models: {sorted(table)}")

    def cross_model(self, name: str | None = None) -> CrossModel:
        model: CrossModel = self._find(self.cross, name, "cross-encoder")
        return model

    def bi_model(self, name: str | None = None) -> BiModel:
        model: BiModel = self._find(self.bi, name, "bi-encoder")
        return model

    def describe(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for c in self.cross.values():
            out.append({"name": c.entry.name, "type": "cross-encoder", "model": c.entry.model,
                        "max_length": c.reranker.max_length, "long_documents": c.reranker.long_documents,
                        "activation": c.reranker.activation,
                        # what is in effect: mode "auto" resolves here, and a missing GPU or extra falls back
                        "mode": c.reranker.mode, "runtime": c.reranker.choice.runtime,
                        "precision": c.reranker.choice.precision, "providers": list(c.reranker.runtime.providers),
                        **c.reranker.describe()})
        for b in self.bi.values():
            out.append({"name": b.entry.name, "type": "bi-encoder", "model": b.entry.model,
                        "dim": b.encoder.dim, "max_length": b.encoder.max_length,
                        "pooling": b.encoder.pooling, "normalize": b.encoder.normalize})
        return out

    def close(self) -> None:
        for c in self.cross.values():
            c.scheduler.close()
        for b in self.bi.values():
            b.scheduler.close()


def load_served_models(
    entries: list[ModelEntry],
    settings: ServerSettings,
    observer: Any | None = None,
) -> ServedModels:
    """Load, warm up and wrap every configured model; a failure names the model and stops.

    ``observer(name)`` returns the :data:`BatchObserver` of that model (metrics), if given.
    """
    if not entries:
        raise InvalidInput("no models to serve: pass --config FILE or --model NAME")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise InvalidInput(f"model names must be unique, got {names}")
    cross: list[CrossModel] = []
    bi: list[BiModel] = []
    for entry in entries:
        started = time.perf_counter()
        obs: BatchObserver | None = observer(entry.name) if observer else None
        try:
            if entry.type == "cross-encoder":
                reranker = Reranker(
                    entry.model, max_length=entry.max_length, batch_size=settings.batch.batch_size,
                    max_batch_tokens=settings.batch.max_batch_tokens,
                    activation=entry.activation,  # type: ignore[arg-type]
                    threads=settings.threads, long_documents=entry.long_documents,  # type: ignore[arg-type]
                    revision=entry.revision, cache_dir=settings.cache_dir,
                    mode=entry.mode, providers=entry.providers,  # type: ignore[arg-type]
                    template=entry.template,
                    trust_remote_code=entry.trust_remote_code,
                    instruction=entry.instruction,  # refused here when the model's head reads none
                    calibration=entry.calibration,
                )
                reranker.score("warm up", ["warm up the model before serving"])
                scheduler = CrossScheduler(entry.name, reranker, settings.batch, observer=obs,
                                           tokenizer_threads=settings.tokenizer_threads)
                cross.append(CrossModel(entry, reranker, scheduler))
            else:
                encoder = Encoder(entry.model, max_length=entry.max_length, batch_size=settings.batch.batch_size,
                                  max_batch_tokens=settings.batch.max_batch_tokens, threads=settings.threads,
                                  revision=entry.revision, cache_dir=settings.cache_dir,
                                  providers=entry.providers, trust_remote_code=entry.trust_remote_code)
                encoder.embed(["warm up the model before serving"])
                if entry.dim is not None and entry.dim != encoder.dim:
                    raise ModelError(f"the config says dim {entry.dim} but the model gives {encoder.dim}")
                bi.append(BiModel(entry, encoder, EncoderScheduler(entry.name, encoder, settings.batch, observer=obs)))
        except Exception as exc:
            ServedModels(cross, bi).close()
            reason = str(exc) if isinstance(exc, CrossrankError) else f"{type(exc).__name__}: {exc}"
            raise ModelLoadFailed(f"model {entry.name!r} ({entry.model}) failed to load: {reason}") from exc
        log.info("loaded %s %r (%s) in %.1f s", entry.type, entry.name, entry.model, time.perf_counter() - started)
    return ServedModels(cross, bi)
