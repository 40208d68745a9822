"""The ``crossrank`` command line: one module per sub-command."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from crossrank import __version__
from crossrank.cli import bench, demo, models, rerank, rerank_run, serve
from crossrank.cli import eval as eval_command
from crossrank.cli import index as index_command
from crossrank.cli import search as search_command
from crossrank.cli import train as train_command
from crossrank.errors import CrossrankError, exit_code

COMMANDS = (rerank, models, demo, index_command, search_command, serve, eval_command, rerank_run, bench, train_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossrank",
        description=(
            "Retrieve & re-rank search with cross-encoders on ONNX Runtime. "
            "Run `crossrank COMMAND --help` for each command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"crossrank {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what crossrank does (downloads, exports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="crossrank: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except CrossrankError as exc:  # 2: the input or options need fixing; 1: crossrank or its environment failed
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path the command was given: missing, not writable, disk full, ...
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return 1
