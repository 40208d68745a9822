"""Progress bars for long work (tqdm, on stderr; off with ``enabled=False``)."""

from __future__ import annotations

import sys
from typing import Any


def bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar; a disabled one still accepts ``update``/``close`` and costs nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr, **kwargs)
