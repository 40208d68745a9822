"""Files derived from a model file once (a converted or pruned copy), cached and published atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path


def derived_dir(source: Path, cache_dir: Path, recipe: str) -> Path:
    """The cache directory for ``source`` turned by ``recipe``: a new file or recipe gets a new one."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{recipe}"
    return cache_dir / hashlib.sha256(key.encode()).hexdigest()[:24]


def publish(target: Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` write into a staging directory, then rename it to ``target`` atomically.

    Another process may publish the same ``target`` first; its copy is then kept.
    """
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    staging.mkdir(parents=True, exist_ok=True)
    try:
        fill(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
