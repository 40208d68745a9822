"""Files derived from a model file once (a converted or pruned copy), cached and published atomically.

Work in progress lives in a staging directory next to its target, named after the process
that owns it (``<target>.staging-<pid>-<host>-<random>``). The owner removes it when it
finishes or fails (a served start-up stopped by SIGTERM unwinds through the same ``finally``);
one left by a process that was killed outright is removed by the next publisher once that
process is gone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

_STAGING = re.compile(r"^(?P<base>.+)\.staging-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]+$")


def derived_dir(source: Path, cache_dir: Path, recipe: str) -> Path:
    """The cache directory for ``source`` turned by ``recipe``: a new file or recipe gets a new one."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{recipe}"
    return cache_dir / hashlib.sha256(key.encode()).hexdigest()[:24]


@lru_cache(maxsize=1)
def _host() -> str:
    """This machine, as 8 hex digits: a process id means something only on its own host."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def make_staging(target: Path) -> Path:
    """Create and return a fresh staging directory for ``target``, owned by this process."""
    staging = target.with_name(f"{target.name}.staging-{os.getpid()}-{_host()}-{secrets.token_hex(4)}")
    staging.mkdir(parents=True)
    return staging


def _owner_gone(pid: int, host: str) -> bool:
    if host != _host() or pid == os.getpid():
        return False  # another machine's process (a shared cache), or this one
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def remove_stale_staging(directory: Path, base: str | None = None) -> list[Path]:
    """Remove the staging directories under ``directory`` (for ``base`` only, if given) whose owner is gone."""
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:  # no directory yet, or unreadable: nothing to clean
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or (base is not None and match["base"] != base) or not entry.is_dir():
            continue
        if _owner_gone(int(match["pid"]), match["host"]):
            log.info("removing %s, left by process %s which is gone", entry, match["pid"])
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def publish(target: Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` write into a staging directory, then rename it to ``target`` atomically.

    Another process may publish the same ``target`` first; its copy is then kept.
    """
    remove_stale_staging(target.parent, target.name)
    staging = make_staging(target)
    try:
        fill(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
