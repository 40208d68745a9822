"""Progress bars for long evaluation work (tqdm, on stderr; off with ``enabled=False``)."""

from __future__ import annotations

from typing import Any


def bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar; a disabled one still accepts ``update``/``close`` and costs nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, **kwargs)
