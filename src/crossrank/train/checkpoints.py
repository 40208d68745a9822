"""Which checkpoint a resumed run continues from.

The trainer writes a checkpoint directory piece by piece (weights, optimizer, scheduler, RNG
states) and ``trainer_state.json`` last. A run killed in the middle of a save leaves a
directory without it (or with half of it), and transformers' ``get_last_checkpoint`` would
pick that directory by its number alone and fail, or resume from torn state. Here a
checkpoint counts only when its ``trainer_state.json`` parses and names the step of the
directory; incomplete ones are removed before training so the trainer never sees them.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


def _step(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def is_complete(path: Path) -> bool:
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == _step(path)


def checkpoints(folder: Path) -> list[Path]:
    """Checkpoint directories in ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    found = [(step, p) for p in folder.iterdir() if (step := _step(p)) is not None]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(folder: Path) -> Path | None:
    complete = [p for p in checkpoints(folder) if is_complete(p)]
    return complete[-1] if complete else None


def clear_incomplete(folder: Path) -> list[Path]:
    """Remove the checkpoints a kill left half-written; returns them."""
    removed = [p for p in checkpoints(folder) if not is_complete(p)]
    for path in removed:
        log.warning("removing the incomplete checkpoint %s (the run was stopped while saving it)", path)
        shutil.rmtree(path)
    return removed
