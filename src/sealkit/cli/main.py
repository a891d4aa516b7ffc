"""Entry point of the ``sealkit`` command and of ``python -m sealkit``.

Exit codes, the same for every command (the table is in docs/cli.md):
0 success; 1 a requirement or check failed (``--require``, conformance,
fuzzing or replay failures, a process or file that could not be examined);
2 bad usage or bad input (one line on stderr, never a traceback); 3 an
unexpected internal error (one line; ``SEALKIT_DEBUG=1`` for the
traceback); 4 an output could not be written (``-o FILE``, ``--svg FILE``,
stdout on a full disk); 130 interrupted. ``sealkit run`` exits with the
program's status once the program has started.

Every command also takes ``--width N`` (see :mod:`sealkit.cli.output`).
"""

from __future__ import annotations

import argparse
import errno
import gc
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
EXIT_IO = 4
EXIT_INTERRUPTED = 130

# OSError numbers that mean "the output could not be written" (stdout on a
# full disk or a failing device), not a bug: exit code 4, one line.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})

MAX_WIDTH = 1 << 16
_width: int | None = None

# A command whose module sets EXIT_WITHOUT_TEARDOWN = True (audit, maps:
# measured against `cat` in benchmarks/bench_audit.py) ends, when run as the
# `sealkit` command (entry()), with os._exit once its output is flushed:
# freeing what it built (tens of thousands of objects for a large process)
# and the interpreter's teardown are work nobody waits for. hold() keeps
# what the command built alive until then, so it is not freed on return.
# The cyclic garbage collector is off while such a command runs: it builds
# tens of thousands of tuples and lists for a large process (each 700 set a
# collection off, and the older generations' collections walk them all
# again), and it makes no reference cycles (a sweep of a host leaves none for
# the collector: tests/unit/test_cli_exit.py); refcounting frees the rest.
_exit_early = False
_held: list[object] = []


def hold(value: object) -> None:
    """Keep ``value`` alive until the command line exits (see
    ``EXIT_WITHOUT_TEARDOWN``): freeing it would be the last thing done."""
    if _exit_early:
        _held.append(value)


class Command(Protocol):
    NAME: str
    HELP: str
    ORDER: int

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class UsageError(Exception):
    """Raised instead of argparse's exit, so every usage error is one line."""


class OutputError(Exception):
    """An output could not be written: exit code 4, the message on one line."""


def requested_width() -> int | None:
    """``--width`` as given on this command line (0: no limit), or ``None``."""
    return _width


def _width_value(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) > MAX_WIDTH:
        raise argparse.ArgumentTypeError(
            f"expected a number of columns from 0 (no limit) to {MAX_WIDTH}, got {text!r}"
        )
    return int(text)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument (to check the
        # metavar), and a formatter without a width imports shutil (bz2,
        # lzma, fnmatch) to ask for the terminal's: about 2 ms of every run,
        # `sealkit audit` from cron included. The width shutil would give.
        make = cast("Callable[..., argparse.HelpFormatter]", self.formatter_class)
        return make(prog=self.prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS`` when it is a
    positive number, else the width of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


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
        p.add_argument(
            "--width", type=_width_value, metavar="N",
            help="draw tables N columns wide (0: no limit; default: the terminal's "
            "width, or no limit when the output is not a terminal)",
        )  # fmt: skip
        p.set_defaults(_run=command.run, _command=command)
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit
    cannot fail again (it would print a traceback and exit 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    global _width, _exit_early
    args_list = list(sys.argv[1:] if argv is None else argv)
    prog = "sealkit"
    _held.clear()
    _exit_early = False
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
        prog = f"sealkit {args.command}"
        _width = args.width
        _exit_early = argv is None and getattr(args._command, "EXIT_WITHOUT_TEARDOWN", False)
        collecting = gc.isenabled()
        if _exit_early:
            gc.disable()
        try:
            status = run(args)
        finally:
            if collecting:
                gc.enable()
        if not getattr(args._command, "PROGRAM_OWNS_STDOUT", False):
            sys.stdout.flush()  # a full disk is reported here, not at exit
        return status
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sealkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`sealkit audit | head`): not an error.
        _silence_stdout()
        return EXIT_OK
    except OutputError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_IO
    except SealkitError as exc:
        print(f"sealkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS or exc.filename is not None:
            return _internal(exc)
        _silence_stdout()
        print(f"{prog}: cannot write the output: {exc.strerror}", file=sys.stderr)
        return EXIT_IO
    except Exception as exc:
        return _internal(exc)
    finally:
        _width = None


def _internal(exc: Exception) -> int:
    if os.environ.get("SEALKIT_DEBUG"):
        raise exc
    print(
        f"sealkit: internal error: {type(exc).__name__}: {exc} (SEALKIT_DEBUG=1 for details)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def entry() -> NoReturn:
    """Console-script entry point."""
    status = main()
    if _exit_early:
        # Everything written is flushed here (a failure takes the usual way
        # out, through the interpreter's own flush at exit); no atexit
        # handler, thread or finaliser of these commands has work to do.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            _held.clear()
            sys.exit(status)
        os._exit(status)
    _held.clear()
    sys.exit(status)
