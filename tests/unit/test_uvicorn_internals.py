"""The server's web stack is pinned to tested releases, and a uvicorn without the internals
``crossrank.server.connections`` uses fails at start-up naming them, not on the first connection."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

pytest.importorskip("uvicorn")
import uvicorn.protocols.http.auto as auto  # noqa: E402

from crossrank.errors import IncompatibleDependency  # noqa: E402
from crossrank.server.connections import protocol_class  # noqa: E402
from crossrank.server.uvicorn_internals import TESTED, check_uvicorn  # noqa: E402

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_installed_uvicorn_has_what_the_server_uses() -> None:
    assert check_uvicorn() is auto.AutoHTTPProtocol
    assert issubclass(protocol_class(5.0), auto.AutoHTTPProtocol)


def test_a_uvicorn_without_them_fails_loudly_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stripped:  # a future uvicorn's protocol that renamed what the deadlines hook into
        def connection_made(self, transport: object) -> None:
            self.transport = transport

    monkeypatch.setattr(auto, "AutoHTTPProtocol", Stripped)
    for call in (check_uvicorn, lambda: protocol_class(5.0)):
        with pytest.raises(IncompatibleDependency) as caught:
            call()
        message = str(caught.value)
        assert "Stripped.send_400_response()" in message and "Stripped.timeout_keep_alive_task" in message
        assert "Stripped.transport" not in message and f"pip install 'uvicorn{TESTED}'" in message


def test_the_server_stack_is_pinned_to_the_installed_tested_releases() -> None:
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pins = {req.name: req for req in map(Requirement, extras["server"])}
    assert pins["uvicorn"].specifier == SpecifierSet(TESTED)  # the range the internals check names
    for name in ("fastapi", "uvicorn", "starlette", "pydantic"):
        specifier = pins[name].specifier
        assert any(spec.operator == "<" for spec in specifier), f"{name} has no upper bound in the 'server' extra"
        assert specifier.contains(version(name)), (
            f"{name} {version(name)} is installed but the 'server' extra allows {specifier}: run the server tests "
            "on it and move the pin")
