"""Import optional dependencies with an error that names the pip extra providing them."""

from __future__ import annotations

import importlib
from types import ModuleType

from crossrank.errors import MissingExtra


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``crossrank[extra]``.

    Only a missing top-level package becomes ``MissingExtra``; an ImportError raised from
    inside an installed package is a real bug and propagates unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise MissingExtra(module.split(".")[0], extra, purpose) from exc
