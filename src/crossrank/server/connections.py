"""Client connections must not exhaust the server: deadlines uvicorn lacks, and the file limit.

The HTTP protocol ``crossrank serve`` runs is uvicorn's, plus three deadlines.

uvicorn closes a keep-alive connection that stays idle *after* a response, but it sets no
timer on a connection that has not sent a request yet, and none while a request arrives:
its keep-alive timer is cancelled by the first byte. A client that connects and sends
nothing, or sends half a request and stops (a crashed client, a broken network, a
slowloris attack), held its socket until the server stopped; enough of them use up the
process's file descriptors, and then every new client is refused. And an answer the client
does not read stays in the server's memory (an ``/embed`` answer for 2,000 texts is 16 MB)
for as long as the connection lives, which was forever: closing a connection waits until
its answer has been sent. Here:

- a new connection is idle like a kept-alive one: closed after ``--keep-alive-timeout``
  seconds without a byte;
- a request must arrive whole (headers and body) within ``--client-timeout`` seconds of its
  first byte, or the client gets ``408`` with the JSON error envelope and the connection is
  closed. The timer stops as soon as the request is in; scoring time is the business of
  ``--deadline``;
- a client that reads none of its answer for ``--client-timeout`` seconds is disconnected
  and the unsent rest of the answer is dropped;
- bytes that are not HTTP/1.1 get ``400`` with the JSON error envelope (uvicorn answers plain
  text) and the connection is closed.

And an answer leaves the process whole. uvicorn writes an answer's head (status line and
headers) and its body to the socket in separate calls; a replica killed between the two left
the balancer a head with ``content-length`` and no body, which it had already passed on to
the client and could not retry elsewhere: the client got a truncated answer. Here what the
connection writes during one turn of the event loop goes to the socket in one call at the
turn's end (:class:`WholeWrites`); the app sends head and body in the same turn, so a process
that dies sends either all of an answer or none of it, and none is an empty reply the
balancer retries on another replica.

The deadlines are added to the protocol class uvicorn would pick itself (httptools where it
is installed, h11 otherwise), through the attributes both share; those are uvicorn's internals,
so uvicorn is pinned to a tested release and :mod:`crossrank.server.uvicorn_internals` checks them
at start-up.

Each connection holds a file descriptor, and many systems start processes with a soft limit
of 1,024 of them: :func:`raise_open_files_limit` lifts it to the hard limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

try:
    import fcntl
    import termios
except ImportError:  # Windows
    fcntl = termios = None  # type: ignore[assignment]

from crossrank.server.errors import envelope_body
from crossrank.server.uvicorn_internals import check_uvicorn

log = logging.getLogger(__name__)


def _closing_answer(status: str, kind: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with the JSON error envelope, after which the connection closes."""
    body = json.dumps(envelope_body(kind, message)).encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


def _timeout_answer(client_timeout_s: float) -> bytes:
    return _closing_answer("408 Request Timeout", "request_timeout",
                           f"the request did not arrive in full within {client_timeout_s:g} s of its first byte "
                           f"(the server's --client-timeout); the connection is closed")


#: uvicorn's plain-text answer to bytes that are not HTTP/1.1, as the JSON envelope
_BAD_HTTP = _closing_answer("400 Bad Request", "invalid_http",
                            "the request is not valid HTTP/1.1 (a malformed request line, header or body framing, "
                            "or headers too large); the connection is closed")


def protocol_class(client_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol class with the deadlines above (pass it as ``Config(http=...)``)."""
    base: Any = check_uvicorn()  # AutoHTTPProtocol, checked for the internals used below
    answer = _timeout_answer(client_timeout_s)

    class DeadlineProtocol(base):  # type: ignore[misc]
        _read_timer: asyncio.TimerHandle | None = None
        _drain_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self.transport = WholeWrites(transport, self.loop)  # what answers are written to
            # uvicorn's keep-alive timer, which the first byte cancels as it does after a response
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def data_received(self, data: bytes) -> None:
            if self._read_timer is None and not self._request_in():
                self._read_timer = self.loop.call_later(client_timeout_s, self._read_expired)
            super().data_received(data)
            if self._request_in():
                self._stop_read_timer()

        def send_400_response(self, msg: str) -> None:
            """The parser refused the bytes (both of uvicorn's protocols call this)."""
            log.debug("closed the connection from %s: %s", self._peer(), msg)
            cycle = self.cycle
            if not self.transport.is_closing() and not (cycle is not None and cycle.response_started):
                self.transport.write(_BAD_HTTP)  # not after part of an answer: nothing may follow it
            self.transport.close()

        def on_response_complete(self) -> None:
            self.transport.flush()  # the whole answer is written: send it now
            super().on_response_complete()
            if self._drain_timer is not None:  # a pipelined answer joins the unsent bytes: measure afresh
                self._drain_timer.cancel()
            self._watch_drain(None)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_read_timer()
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            super().connection_lost(exc)

        def _request_in(self) -> bool:
            """A request is fully received and its response is not finished yet."""
            cycle = self.cycle
            return cycle is not None and not cycle.more_body and not cycle.response_complete

        def _stop_read_timer(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _peer(self) -> str:
            return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

        def _read_expired(self) -> None:
            self._read_timer = None
            if self.transport.is_closing():
                return
            log.warning("closed the connection from %s: its request did not arrive in full within %g s "
                        "(--client-timeout)", self._peer(), client_timeout_s)
            cycle = self.cycle  # None, the request arriving, or the one before it on this connection
            answered = cycle is not None and cycle.response_started and (cycle.more_body or not cycle.response_complete)
            if not answered:  # (a 413 goes out before the body is in; nothing may follow it)
                self.transport.write(answer)
            self.transport.close()  # a route waiting for the rest of the body sees a disconnect

        def _watch_drain(self, unsent_before: int | None) -> None:
            """Every ``client_timeout_s`` while answers wait to be sent: has the client read any?"""
            self._drain_timer = None
            if self.transport.get_write_buffer_size() == 0:
                return  # what is left, if anything, is in the kernel's buffers, not in this process
            unsent = self.transport.get_write_buffer_size() + _queued_in_kernel(self.transport)
            if unsent_before is not None and unsent >= unsent_before:
                log.warning("dropped the connection from %s: it read none of its answer in %g s, %d bytes unsent "
                            "(--client-timeout)", self._peer(), client_timeout_s, unsent)
                self.transport.abort()  # close() would wait for the answer to be read
                return
            self._drain_timer = self.loop.call_later(client_timeout_s, self._watch_drain, unsent)

    return DeadlineProtocol


class WholeWrites:
    """A connection's transport that sends what is written to it during one turn of the event
    loop as one write, at the end of that turn (see the module's description).

    Everything else is the wrapped transport's: closing sends what is held first, aborting
    drops it, and the write buffer's size counts it.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))
        if self._flush is None:
            self._flush = self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is held now, in one write."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            # one call: Python 3.12+ sends the pieces in one sendmsg(), without joining a large body
            self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self.flush()  # nothing left to send: only cancels the pending flush
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


def _queued_in_kernel(transport: asyncio.BaseTransport | WholeWrites) -> int:
    """Bytes the kernel still holds to send on this connection (Linux; 0 where unknown).

    A client that reads slowly frees room in the kernel's send buffer first; the transport's
    own buffer shrinks only once the kernel takes more, which can be megabytes later.
    """
    sock = transport.get_extra_info("socket")
    request = getattr(termios, "TIOCOUTQ", None) if termios is not None else None
    if sock is None or request is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0])
    except OSError:
        return 0


def raise_open_files_limit() -> int | None:
    """Lift this process's soft limit on open files to its hard limit; the new soft limit, or
    None where the system has no such limit (Windows) or refuses."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # macOS refuses an unlimited hard limit; keep what we have
        return soft
    return hard
