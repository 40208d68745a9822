"""The inference server: one app, one module per wire format, over the same scheduler core.

Needs the ``server`` extra (``pip install 'crossrank[server]'``).
"""

from __future__ import annotations

from crossrank.server.app import DEFAULT_ROUTERS, RouterFactory, create_app
from crossrank.server.config import ModelEntry, ServerSettings, read_config
from crossrank.server.state import ServedModels, load_served_models

__all__ = [
    "DEFAULT_ROUTERS",
    "ModelEntry",
    "RouterFactory",
    "ServedModels",
    "ServerSettings",
    "create_app",
    "load_served_models",
    "read_config",
]
