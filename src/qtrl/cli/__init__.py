"""``qtrl`` command line: each subcommand lives in its own module with
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Only this package prints; library code logs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import typing
from collections.abc import Iterator, Sequence

from ..distributed.launch import AgentFailure
from ..errors import RunStopped, Terminated, UserError
from ..quantum.memory import StatevectorTooLarge
from . import bench, circuit, export, info
from . import eval as eval_cmd
from . import train as train_cmd

__all__ = ["build_parser", "main"]

SUBCOMMANDS = [info, bench, train_cmd, eval_cmd, export, circuit]


class OneLineParser(argparse.ArgumentParser):
    """Bad flags give one line (not the whole usage), exit 2, like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="qtrl", description="Quantum-Train reinforcement learning, distributed (Dist-QTRL).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with _sigterm_unwinds():
            return int(args.func(args) or 0)
    except (UserError, StatevectorTooLarge) as err:
        print(f"qtrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (AgentFailure, RunStopped) as err:
        print(f"qtrl {args.command}: error: {err}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"qtrl {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"qtrl {args.command}: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`~qtrl.errors.Terminated` (a KeyboardInterrupt)
    while a command runs, so it ends like Ctrl-C: every ``finally`` runs (agents
    ended, temporary folders removed) and one line says so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated("SIGTERM")

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


if __name__ == "__main__":
    sys.exit(main())
