"""One exception hierarchy for the whole package, and one table of how each is answered.

Every error a user can cause or meet derives from :class:`CrossrankError`. :data:`ANSWERS`
gives each class its HTTP status and whether its message may be shown to a client; the server
(``crossrank.server.errors``) answers from it, and the CLI takes its exit code from it
(:func:`exit_code`).
"""

from __future__ import annotations

from typing import NamedTuple


class CrossrankError(Exception):
    """Base class of every error crossrank raises on purpose."""

    #: short machine-readable name used in JSON error envelopes
    kind = "crossrank_error"


class InvalidInput(CrossrankError, ValueError):
    """The caller passed something crossrank cannot score (None, a non-string, a bad option)."""

    kind = "invalid_input"


class MalformedBody(InvalidInput):
    """The request body cannot be read as JSON: not UTF-8, not JSON, or JSON that Python alone
    accepts (NaN, Infinity, a number beyond float range)."""


class PayloadTooLarge(InvalidInput):
    """The request body or the number of documents is above the configured maximum."""

    kind = "payload_too_large"


class UnknownTokenId(InvalidInput):
    """A token id outside the model's vocabulary."""


class CorpusChanged(InvalidInput):
    """The corpus file was modified, replaced or grew while it was being read."""

    kind = "corpus_changed"


class BadIndex(CrossrankError):
    """The index directory cannot be used: :class:`IndexUnusable` or :class:`IndexCorrupt`."""

    kind = "bad_index"


class IndexUnusable(BadIndex, InvalidInput):
    """The path names no crossrank index, or one that cannot do what was asked (no vectors for
    dense search, a format version this release does not read): the caller's choice to fix."""


class IndexCorrupt(BadIndex):
    """The index's own files are missing, truncated, unreadable or disagree with its manifest:
    a storage failure, not the caller's input (rebuild the index)."""

    kind = "index_corrupt"


class Unauthorized(CrossrankError):
    """The inference routes need ``Authorization: Bearer <key>``."""

    kind = "unauthorized"


class ModelError(CrossrankError):
    """A model could not be found, downloaded, exported or loaded."""

    kind = "model_error"


class ModelNotFound(ModelError):
    """The name is neither a local model directory nor a reachable hub repository."""

    kind = "model_not_found"


class ModelLoadFailed(ModelError):
    """A served model failed to load at start-up; raised from the error that stopped it, and
    answered as that error (a model that does not exist is the caller's to fix, a crashed export
    is not)."""


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


class IncompatibleDependency(CrossrankError):
    """An installed package lacks what crossrank uses (e.g. a uvicorn outside the tested range);
    the message names what is missing and the release to install."""

    kind = "incompatible_dependency"


class Overloaded(CrossrankError):
    """The work queue is full; retry later."""

    kind = "overloaded"


class DeadlineExceeded(CrossrankError):
    """The request did not finish before its deadline and was cancelled."""

    kind = "deadline_exceeded"


class NotReady(CrossrankError):
    """The server is starting or shutting down."""

    kind = "not_ready"


class ShuttingDown(NotReady):
    """The server stopped before this request finished (``--graceful-timeout`` ran out)."""

    kind = "shutting_down"


class DownloadFailed(CrossrankError):
    """A public file (e.g. a BEIR dataset) could not be downloaded."""

    kind = "download_failed"


class ServerError(CrossrankError):
    """A crossrank server could not be reached, answered an error status, or answered
    something that is not a Cohere rerank reply. ``status`` is the HTTP status, if any."""

    kind = "server_error"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection before its answer was ready (a server-internal signal:
    nobody is left to answer, so it has no row in :data:`ANSWERS`)."""


class Answer(NamedTuple):
    """How an error is answered: its HTTP status, and whether its message may reach a client."""

    status: int
    #: False: the message may hold server paths or internals; the client gets :data:`HIDDEN_MESSAGE`
    #: and the server logs the real one
    shown: bool


#: each class's answer, most specific class first: the first row the error is an instance of wins
#: (tests/unit/test_errors.py checks that no row is shadowed by an earlier one)
ANSWERS: tuple[tuple[type[CrossrankError], Answer], ...] = (
    (PayloadTooLarge, Answer(413, True)),
    (MalformedBody, Answer(400, True)),
    (InvalidInput, Answer(422, True)),
    (Unauthorized, Answer(401, True)),
    (ModelNotFound, Answer(404, True)),
    (Overloaded, Answer(429, True)),
    (NotReady, Answer(503, True)),
    (DeadlineExceeded, Answer(504, True)),
    (HubUnavailable, Answer(503, True)),
    (DownloadFailed, Answer(503, True)),
    (IndexCorrupt, Answer(500, False)),
    (ModelError, Answer(500, False)),
    (CrossrankError, Answer(500, False)),
)

#: what a client reads instead of a message the table hides
HIDDEN_MESSAGE = "the server failed on this request; see the server log"


def answer_of(exc: CrossrankError) -> Answer:
    """The :data:`ANSWERS` row of ``exc``'s class (of its cause for :class:`ModelLoadFailed`)."""
    if isinstance(exc, ModelLoadFailed) and isinstance(exc.__cause__, CrossrankError):
        return answer_of(exc.__cause__)
    for cls, answer in ANSWERS:
        if isinstance(exc, cls):
            return answer
    return Answer(500, False)


def exit_code(exc: CrossrankError) -> int:
    """The CLI's exit status for ``exc``: 2 when the caller has something to fix (a 4xx in the
    table), 1 when crossrank or its environment failed (a 5xx). The CLI always prints the
    message: its reader runs the process."""
    return 2 if answer_of(exc).status < 500 else 1
