"""One exception hierarchy for the whole package.

Every error a user can cause or meet derives from :class:`CrossrankError`; the server maps
each class to one HTTP status (see ``crossrank.server.errors``), the CLI prints the message.
"""

from __future__ import annotations


class CrossrankError(Exception):
    """Base class of every error crossrank raises on purpose."""

    #: short machine-readable name used in JSON error envelopes
    kind = "crossrank_error"


class InvalidInput(CrossrankError, ValueError):
    """The caller passed something crossrank cannot score (None, a non-string, a bad option)."""

    kind = "invalid_input"


class ModelError(CrossrankError):
    """A model could not be found, downloaded, exported or loaded."""

    kind = "model_error"


class ModelNotFound(ModelError):
    """The name is neither a local model directory nor a reachable hub repository."""

    kind = "model_not_found"


class HubUnavailable(ModelError):
    """The Hugging Face hub could not be reached and the model is not in the local cache."""

    kind = "hub_unavailable"


class MissingExtra(CrossrankError, ImportError):
    """An optional dependency is needed; the message names the ``pip install`` that adds it."""

    kind = "missing_extra"

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the optional package '{module}', which is not installed. "
            f"Install it with: pip install 'crossrank[{extra}]'"
        )


class Overloaded(CrossrankError):
    """The work queue is full; retry later."""

    kind = "overloaded"


class DeadlineExceeded(CrossrankError):
    """The request did not finish before its deadline and was cancelled."""

    kind = "deadline_exceeded"


class DownloadFailed(CrossrankError):
    """A public file (e.g. a BEIR dataset) could not be downloaded."""

    kind = "download_failed"
