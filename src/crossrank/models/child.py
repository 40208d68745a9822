"""Run a one-off model conversion in a child Python process, and the child's entry point.

Converting a model (the ONNX export with torch and transformers, the first-token cut with
``onnx`` and two check sessions) takes hundreds of MB that a Python process never gives
back. Done in a child, the process that goes on serving holds only the runtime, on its
first start as on every restart. ``python -m crossrank.models.child COMMAND ...`` runs:

* ``export DIRECTORY OUT TASK --error-file FILE``: :func:`crossrank.models.export_worker.export_onnx`;
* ``first-token SOURCE STAGING``: :func:`crossrank.models.first_token.prune_into`.

The child stops when its parent dies (Linux), and the parent stops the child when anything
(KeyboardInterrupt, a server's SIGTERM during start-up) interrupts its wait.
"""

from __future__ import annotations

import argparse
import os
import signal
import site
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import crossrank

_PR_SET_PDEATHSIG = 1
#: exit code of a child whose failure was the machine's (a full disk), not the model's
EX_TEMPFAIL = 75


def child_env() -> dict[str, str]:
    """This process's environment, with this crossrank importable when it is a source checkout."""
    env = dict(os.environ)
    package_root = str(Path(crossrank.__file__).resolve().parent.parent)
    installed = {str(Path(p).resolve()) for p in (*site.getsitepackages(), site.getusersitepackages())}
    if package_root not in installed:  # found through sys.path or PYTHONPATH, not through site
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def run_child(command: str, args: Sequence[str], *, tail_chars: int = 3000) -> tuple[int, str]:
    """Run ``python -m crossrank.models.child COMMAND ARGS``; returns its exit code and the end of its output."""
    argv = [sys.executable, "-m", __name__, command, *args, "--parent", str(os.getpid())]
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=child_env())
        try:
            code = child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        output.seek(max(0, output.seek(0, os.SEEK_END) - tail_chars))
        return code, output.read().decode("utf-8", "replace").strip()


def describe_exit(code: int) -> str:
    """``failed with exit code 1``, ``was killed by SIGKILL (...)``."""
    if code >= 0:
        return f"failed with exit code {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
    return f"was killed by {name}" + (" (most often: the machine ran out of memory)" if -code == signal.SIGKILL else "")


def _die_with_parent(parent: int) -> None:
    """Ask Linux to stop this process when its parent dies (a SIGKILL'd server leaves no converter)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # no prctl: the parent's own clean-up still stops us
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export")
    export.add_argument("directory", type=Path)
    export.add_argument("out", type=Path)
    export.add_argument("task")  # sequence-classification, feature-extraction, st-modules, llm-yes-no:YES:NO
    export.add_argument("--error-file", type=Path, required=True)
    export.add_argument("--trust-remote-code", action="store_true")  # the user's opt-in, checked by the parent
    export.add_argument("--external-data-bytes", type=int)  # graphs larger than this keep weights in a side file
    export.add_argument("--parent", type=int, default=os.getppid())
    prune = commands.add_parser("first-token")
    prune.add_argument("source", type=Path)
    prune.add_argument("staging", type=Path)
    prune.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    import logging

    logging.basicConfig(level=logging.INFO, format="crossrank %(name)s: %(message)s")
    if args.command == "export":
        from crossrank.models.export_worker import run_export_command
        from crossrank.models.external_data import THRESHOLD

        return run_export_command(
            args.directory, args.out, args.task, args.error_file, trust_remote_code=args.trust_remote_code,
            external_data_bytes=THRESHOLD if args.external_data_bytes is None else args.external_data_bytes,
        )
    from crossrank.models.first_token import prune_into

    try:
        prune_into(args.source, args.staging)
    except (OSError, MemoryError) as exc:  # not a verdict on the graph: the parent will try again later
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    return 0


if __name__ == "__main__":
    sys.exit(main())
