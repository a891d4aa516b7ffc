"""``sealkit exec``: run a program with its loaded code sealed by the loader.

::

    sealkit exec [--level code|all] [--marked-only] [--no-inherit]
                 [--report FILE|fd:N] [--require sealed] [--] PROGRAM [ARGS...]
    sealkit exec --print-env [options] [--] [PROGRAM]

The program replaces this process (same PID, argv and environment plus the
variables that load ``libsealexec.so``). Exit status: the program's; 2 for
a usage error or a missing library; 1 when ``--require sealed`` cannot be
met; 126 / 127 when the program is not executable / not found. Everything
after ``--`` (or from the first word that is not an option) is the
program's. Only ``argparse``, ``os`` and ``sys`` are imported here: this
is on the way to every sealed program's start.
"""

from __future__ import annotations

import argparse
import os
import sys

NAME = "exec"
HELP = "run any dynamically linked glibc program with its loaded code sealed (same PID, argv)"
ORDER = 65

_TAKES_VALUE = ("--level", "--report", "--require")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "sealkit exec [--level code|all] [--marked-only] [--no-inherit] [--report FILE|fd:N]\n"
        "                    [--require sealed] [--print-env] [--] PROGRAM [ARGS ...]"
    )
    parser.add_argument(
        "--level",
        choices=("code", "all"),
        default="code",
        help="code: text, read-only data and RELRO, of start-up objects and of later ones that "
        "are never unloaded (default); all: whole objects, and every later object",
    )
    parser.add_argument(
        "--marked-only",
        action="store_true",
        help="seal only objects that carry GNU_PROPERTY_MEMORY_SEAL (ld -z memory-seal)",
    )
    parser.add_argument(
        "--no-inherit",
        action="store_true",
        help="do not pass sealing on to the programs this one executes",
    )
    parser.add_argument(
        "--report",
        metavar="FILE|fd:N",
        help="write what was sealed, per object, as JSON lines; %%p in FILE is the PID "
        "(schema: sealkit/data/exec.schema.json)",
    )
    parser.add_argument(
        "--require",
        choices=("sealed",),
        help="sealed: exit 1 instead of running a program that cannot be sealed",
    )
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="print the NAME=value lines a service manager needs (systemd EnvironmentFile=), "
        "then exit",
    )
    # The program and its arguments never reach argparse (split_args takes
    # them off first); this entry only describes them in --help.
    parser.add_argument(
        "_help_program", nargs="?", metavar="PROGRAM [ARGS ...]", help="the program and its words"
    )


def split_args(words: list[str]) -> tuple[list[str], list[str]]:
    """sealkit's words, then the program's: from after ``--``, or from the
    first word that is neither an option nor an option's value."""
    at = 0
    while at < len(words):
        word = words[at]
        if word == "--":
            return words[:at], words[at + 1 :]
        if not word.startswith("-") or word == "-":
            break
        # an option that takes a value, possibly abbreviated (argparse allows
        # unique prefixes), and not written as --option=value
        if "=" not in word and len(word) > 2 and any(o.startswith(word) for o in _TAKES_VALUE):
            at += 1
        at += 1
    return words[:at], words[at:]


def _print_env(args: argparse.Namespace, program: list[str]) -> int:
    from ...sealing import exec as sealexec  # noqa: PLC0415

    lib = sealexec.library_path()
    if lib is None:
        raise sealexec.ExecRefused(sealexec.NO_LIBRARY, 2)
    if program:
        found = sealexec.inspect_program(sealexec.resolve_program(program[0], os.environ))
        if not found.sealable:
            if args.require:
                raise sealexec.ExecRefused(f"sealkit exec: {found.detail} (--require sealed)", 1)
            print(f"sealkit exec: warning: {found.detail}", file=sys.stderr)
    report = sealexec.report_target(args.report, check_fd=False) if args.report else None
    env = sealexec.environment(
        lib,
        level=args.level,
        marked_only=args.marked_only,
        inherit=not args.no_inherit,
        require=args.require == "sealed",
        report=report,
    )
    for name in sorted(env):
        print(f"{name}={env[name]}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ...sealing import exec as sealexec  # noqa: PLC0415

    program: list[str] = getattr(args, "passthrough", [])
    try:
        if args.print_env:
            return _print_env(args, program)
        plan = sealexec.plan(
            program,
            level=args.level,
            marked_only=args.marked_only,
            inherit=not args.no_inherit,
            require_sealed=args.require == "sealed",
            report=args.report,
        )
    except sealexec.ExecRefused as exc:
        print(str(exc), file=sys.stderr)
        return exc.status
    for warning in plan.warnings:
        print(warning, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(plan.path, plan.argv, plan.env)  # replaces this process; returns only on error
    except OSError as exc:
        print(f"sealkit exec: {plan.path}: {exc.strerror}", file=sys.stderr)
        return 126
