"""What crossrank relies on inside uvicorn, checked before the server starts.

:mod:`crossrank.server.connections` subclasses uvicorn's HTTP protocol class and uses attributes
uvicorn does not document (its keep-alive timer, the request/response cycle, the 400 answer);
:mod:`crossrank.server.drain` overrides ``uvicorn.Server.handle_exit``. ``pyproject.toml`` pins
uvicorn to the minor release these were verified against (:data:`TESTED`); on another release
:func:`check_uvicorn` names what is missing at start-up, instead of an ``AttributeError`` on the
first connection.
"""

from __future__ import annotations

import sys
from typing import Any

from crossrank.errors import IncompatibleDependency

#: the uvicorn releases the protocol subclass was verified against (as pinned in pyproject.toml)
TESTED = ">=0.55,<0.56"

#: methods DeadlineProtocol overrides or calls
PROTOCOL_METHODS = ("connection_made", "data_received", "connection_lost", "send_400_response",
                    "on_response_complete", "timeout_keep_alive_handler")
#: instance attributes DeadlineProtocol reads or sets (assigned in uvicorn's own methods)
PROTOCOL_ATTRIBUTES = ("loop", "transport", "client", "cycle", "timeout_keep_alive", "timeout_keep_alive_task")
#: attributes of the protocol's request/response cycle that DeadlineProtocol reads
CYCLE_ATTRIBUTES = ("more_body", "response_started", "response_complete")


def _mentioned(cls: type) -> set[str]:
    """Every attribute name the functions defined on ``cls`` (and its bases) touch."""
    names: set[str] = set()
    for klass in cls.__mro__:
        for member in vars(klass).values():
            code = getattr(member, "__code__", None)
            if code is not None:
                names.update(code.co_names)
    return names


def missing_internals(protocol: type, cycle: type | None) -> list[str]:
    """What of the above ``protocol`` (and its ``cycle`` class) lacks, as dotted names."""
    missing = [f"{protocol.__name__}.{name}()" for name in PROTOCOL_METHODS if not callable(getattr(protocol, name, None))]
    mentioned = _mentioned(protocol)
    missing += [f"{protocol.__name__}.{name}" for name in PROTOCOL_ATTRIBUTES if name not in mentioned]
    if cycle is None:
        missing.append(f"{protocol.__module__}.RequestResponseCycle")
    else:
        in_cycle = _mentioned(cycle)
        missing += [f"{cycle.__name__}.{name}" for name in CYCLE_ATTRIBUTES if name not in in_cycle]
    return missing


def check_uvicorn() -> Any:
    """uvicorn's automatic HTTP protocol class, after checking it has what crossrank uses;
    :class:`~crossrank.errors.IncompatibleDependency` naming what it lacks otherwise."""
    import uvicorn

    try:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol
    except ImportError:
        missing = ["uvicorn.protocols.http.auto.AutoHTTPProtocol"]
        protocol: Any = None
    else:
        protocol = AutoHTTPProtocol
        cycle = getattr(sys.modules[protocol.__module__], "RequestResponseCycle", None)
        missing = missing_internals(protocol, cycle)
    if not callable(getattr(uvicorn.Server, "handle_exit", None)):
        missing.append("uvicorn.Server.handle_exit()")
    if missing:
        raise IncompatibleDependency(
            f"uvicorn {getattr(uvicorn, '__version__', '?')} lacks what crossrank's connection handling uses: "
            f"{', '.join(missing)}. crossrank is tested with uvicorn{TESTED}: pip install 'uvicorn{TESTED}'"
        )
    return protocol
