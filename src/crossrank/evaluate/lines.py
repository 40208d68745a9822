"""Numbered lines of the UTF-8 text files evaluation reads: runs, qrels and queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from crossrank.errors import InvalidInput


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(number, line)`` from line 1, line endings kept.

    A file that cannot be opened, or a line that is not UTF-8, is an :class:`InvalidInput`
    naming the file and the line (read as bytes and decoded per line, so the number is exact).
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{path}:{number}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                    f"save the file as UTF-8"
                ) from None
            yield number, line
