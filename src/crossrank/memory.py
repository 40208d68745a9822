"""Handing freed memory back to the operating system.

glibc keeps memory that Python and the tokenizer free in its arenas, to reuse it; after a burst
of large requests a server's RSS would stay at the burst's level. ``malloc_trim`` returns the
free pages at the top of each arena and the unused pages inside them. Elsewhere (musl, macOS,
Windows) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _trim()


def release_memory() -> bool:
    """Return freed heap memory to the system; whether it could be asked."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
