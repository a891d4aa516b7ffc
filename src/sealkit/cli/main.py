"""Entry point of the ``sealkit`` command and of ``python -m sealkit``.

Exit codes: 0 success; 1 a requirement or check failed (``--require``,
conformance or fuzzing failures); 2 bad usage (one line on stderr, never a
traceback); 3 an unexpected internal error (one line; set ``SEALKIT_DEBUG=1``
for the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn, Protocol, cast

from .. import __version__
from ..errors import SealkitError
from . import commands

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class Command(Protocol):
    NAME: str
    HELP: str
    ORDER: int

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class UsageError(Exception):
    """Raised instead of argparse's exit, so every usage error is one line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def command_names() -> list[str]:
    """Subcommand names, from the module files (nothing imported).

    A directory listing rather than ``pkgutil.iter_modules``, which imports
    ``inspect`` (5 ms here) into every ``sealkit run`` before the program starts.
    """
    return sorted(
        name.removesuffix(".py")
        for folder in commands.__path__
        for name in os.listdir(folder)
        if name.endswith(".py") and not name.startswith("_")
    )


def load(name: str) -> Command:
    """Import one command module (its file name is the subcommand's name)."""
    module: ModuleType = importlib.import_module(f"{commands.__name__}.{name}")
    return cast(Command, module)


def discover(only: str | None = None) -> list[Command]:
    """Command modules in ``ORDER``: all of them, or just ``only``.

    Importing one command instead of all keeps start-up lean: ``sealkit run``
    hardens before the program starts, and every module imported before
    then is sealed by ``harden()`` rather than by the import hook.
    """
    names = [only] if only is not None else command_names()
    found = [load(name) for name in names]
    return sorted(found, key=lambda c: (c.ORDER, c.NAME))


def _requested(args: Sequence[str]) -> str | None:
    """The subcommand named in ``args`` (the first non-option word), if known."""
    for word in args:
        if not word.startswith("-"):
            return word if word in command_names() else None
        if word in ("-h", "--help", "--version"):
            return None
    return None


def build_parser(found: Sequence[Command]) -> ArgumentParser:
    parser = ArgumentParser(
        prog="sealkit",
        description="Memory sealing (mseal) for Linux: seal, harden, audit, model, analyze.",
    )
    parser.add_argument("--version", action="version", version=f"sealkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for command in found:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def _parse(parser: ArgumentParser, words: list[str]) -> argparse.Namespace:
    """Parse ``words``; a command with ``split_args(words) -> (own, passthrough)``
    gets only its own words parsed and the rest, untouched, as ``passthrough``
    (``sealkit run``: everything after the program selector is the program's).
    """
    name = _requested(words)
    split: Callable[[list[str]], tuple[list[str], list[str]]] | None = None
    if name is not None:
        split = getattr(load(name), "split_args", None)
    if name is None or split is None:
        return parser.parse_args(words)
    at = words.index(name)  # the first word not starting with "-"
    own, passthrough = split(words[at + 1 :])
    args = parser.parse_args([*words[: at + 1], *own])
    args.passthrough = passthrough
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(discover(_requested(args_list)))
        try:
            args = _parse(parser, args_list)
        except UsageError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE
        run: Callable[[argparse.Namespace], int] | None = getattr(args, "_run", None)
        if run is None:
            parser.print_help()
            return EXIT_USAGE
        return run(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sealkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`sealkit audit | head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except SealkitError as exc:
        print(f"sealkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get("SEALKIT_DEBUG"):
            raise
        print(
            f"sealkit: internal error: {type(exc).__name__}: {exc} (SEALKIT_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def entry() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
