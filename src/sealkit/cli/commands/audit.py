"""``sealkit audit``: which processes on this host have sealed memory.

Imports stay inside :func:`run`: the command line discovers every command
module at start-up, and a host sweep is measured against ``cat`` (rich is
imported only to draw a table or a progress bar).
"""

# ruff: noqa: PLC0415 (imports are lazy on purpose: start-up time is part of a sweep)

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

NAME = "audit"
HELP = "Show which processes on this host have sealed memory, and what is sealed."
ORDER = 20

EPILOG = """\
requirements (--require, repeatable; exit code 1 and one line on stderr per unmet one):
  complete                  no process was denied (a partial view proves nothing)
  system                    every process has its [vdso] sealed (CONFIG_MSEAL_SYSTEM_MAPPINGS)
  sealed:PATTERN            every process whose command matches PATTERN has a sealed
                            mapping, and at least one such process was audited
  sealed:PATTERN:KIND,...   ... with sealed mappings of each KIND
kinds: text rodata relro data file heap stack anon shm system guard
exit codes: 0 ok, 1 a requirement is not met, 2 bad usage, 3 internal error,
  4 the output could not be written (-o FILE); the table is in docs/cli.md
"""


def _positive(text: str) -> int:
    # ids are 32-bit on Linux (pid_max is at most 2**22); the bound also
    # keeps a 5,000-digit argument from reaching int()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not 0 < int(text) < 1 << 32:
        raise argparse.ArgumentTypeError(f"not a positive 32-bit integer: {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "--pid", type=_positive, action="append", metavar="PID",
        help="only this process (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--user", action="append", metavar="USER",
        help="only processes whose effective user is USER, a name or a uid (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--comm", metavar="PATTERN",
        help="only processes whose command name matches the shell PATTERN (e.g. 'python*')",
    )  # fmt: skip
    parser.add_argument(
        "--sealed-only", action="store_true",
        help="list only processes with sealed memory (and denied ones, which may have some)",
    )  # fmt: skip
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", dest="format", action="store_const", const="json",
                     help="JSON (schema: sealkit/data/audit.schema.json)")  # fmt: skip
    out.add_argument(
        "--format", choices=("table", "json", "prometheus"),
        help="table (default), json, or prometheus (node_exporter textfile collector)",
    )  # fmt: skip
    parser.add_argument(
        "--require", action="append", default=[], metavar="REQ",
        help="exit 1 unless REQ holds (see below; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", metavar="FILE",
        help="write to FILE instead of stdout, atomically: a temporary file in FILE's "
        "directory renamed over it; a new FILE gets mode 0644, an existing one keeps its mode",
    )  # fmt: skip
    parser.add_argument("--host", help="the host label in Prometheus output (default: uname -n)")
    parser.add_argument(
        "-j", "--jobs", type=_positive, metavar="N",
        help="reader threads (default: one per idle CPU, at most 4)",
    )  # fmt: skip


def _users(names: list[str] | None) -> list[int] | None:
    if not names:
        return None
    import pwd

    uids = []
    for name in names:
        if name.isascii() and name.isdigit():
            if len(name) > 10 or int(name) >= 1 << 32:
                raise ValueError(f"uid {name} is out of range (uids are 32-bit)")
            uids.append(int(name))
            continue
        try:
            uids.append(pwd.getpwnam(name).pw_uid)
        except KeyError:
            raise ValueError(f"unknown user {name!r}") from None
    return uids


class _Progress:
    """A rich progress bar on stderr, shown only on a terminal and only
    once the sweep has taken half a second."""

    def __init__(self) -> None:
        import time

        self._clock = time.monotonic
        self._started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if self._clock() - self._started < 0.5:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            from ..output import PipeConsole

            self._bar = Progress(
                TextColumn("auditing processes"), BarColumn(), MofNCompleteColumn(),
                console=PipeConsole(stderr=True), transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("audit", total=total)
        self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from ..output import write_output

    # node_exporter may read the file at any moment: never half. A failure is
    # an OutputError: one line, exit code 4.
    write_output(text, output)


def run(args: argparse.Namespace) -> int:
    from ...errors import ArgumentError
    from ...host.outputs import to_json, to_prometheus
    from ...host.requirements import check_requirements, parse_requirement
    from ...host.sweep import scan_host

    fmt = args.format or "table"
    try:
        requirements = [parse_requirement(text) for text in args.require]
        users = _users(args.user)
    except (ArgumentError, ValueError) as exc:
        print(f"sealkit audit: {exc}", file=sys.stderr)
        return 2
    if args.output is not None and os.path.isdir(args.output):
        print(f"sealkit audit: --output {args.output!r} is a directory", file=sys.stderr)
        return 2
    progress = _Progress() if sys.stderr.isatty() else None
    try:
        report = scan_host(
            pids=args.pid, users=users, comm=args.comm, jobs=args.jobs, progress=progress
        )
    finally:
        if progress is not None:
            progress.close()
    results = check_requirements(report, requirements)
    text: str | None
    if fmt == "json":
        import json

        doc = to_json(report, sealed_only=args.sealed_only, requirements=results)
        text = json.dumps(doc, indent=1) + "\n"
    elif fmt == "prometheus":
        text = to_prometheus(report, results, host=args.host)
    else:
        text = _table(report, args.sealed_only, to_file=args.output is not None)
    if text is not None:
        _write(text, args.output)
    failed = [r for r in results if not r.met]
    for result in failed:
        print(f"sealkit audit: requirement {result.requirement} not met: {result.reason}",
              file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


def _table(report: Any, sealed_only: bool, to_file: bool) -> str | None:
    """Draw the table: on stdout (returns ``None``), or as plain text for ``--output``."""
    import io

    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ...host.classify import KINDS
    from ...text import human_size, printable
    from ..output import file_width
    from ..output import table_console as stdout_console

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # Root can still be refused (ptrace scope, an LSM, a sandbox's init):
    # don't advise "run as root" to root.
    _DENIED_WHY = (
        "cannot read smaps (refused even to root: ptrace or LSM policy)"
        if os.geteuid() == 0
        else "cannot read smaps (run as root, or as this user)"
    )
    for header, justify in (
        ("PID", "right"), ("USER", "left"), ("COMMAND", "left"), ("MAPS", "right"),
        ("SEALED", "right"), ("SEALED BYTES", "right"), ("WHAT IS SEALED", "left"),
    ):  # fmt: skip
        table.add_column(
            header,
            justify="right" if justify == "right" else "left",
            no_wrap=header != "WHAT IS SEALED",
        )
    for proc in report.processes:
        if sealed_only and not proc.any_sealed and proc.status != "denied":
            continue
        if proc.status == "denied":
            table.add_row(
                str(proc.pid), Text(printable(proc.user)), Text(printable(proc.command)),
                Text("?", style="yellow"),
                Text("DENIED", style="bold yellow"), Text("?", style="yellow"),
                Text(_DENIED_WHY, style="yellow"),
            )  # fmt: skip
            continue
        kinds = proc.by_kind()
        if kinds:
            what = Text(", ".join(f"{k} {kinds[k][0]}" for k in KINDS if k in kinds),
                        style="green")  # fmt: skip
            count = Text(str(proc.sealed_mappings), style="bold green")
            size = Text(human_size(proc.sealed_bytes or 0), style="green")
        else:
            what = Text("not sealed", style="red")
            count = Text("0", style="red")
            size = Text("-", style="dim")
        table.add_row(
            str(proc.pid),
            Text(printable(proc.user)),
            Text(printable(proc.command)),
            str(proc.mappings),
            count,
            size,
            what,
        )
    sink = io.StringIO() if to_file else None
    console = stdout_console(sink, file_width()) if sink is not None else stdout_console()
    if table.row_count:
        console.print(table)
    elif sealed_only:
        console.print("no audited process has sealed memory")
    console.print(Text(report.summary(), style="bold"))
    if sink is None and report.sealed == 0 and sys.stdout.isatty():
        console.print(Text(NOTHING_SEALED, style="dim"))
    return sink.getvalue() if sink is not None else None


NOTHING_SEALED = (
    "Nothing audited here is sealed: no released glibc or distribution seals "
    "memory yet, so 'not sealed' is what a stock host shows. To see sealing, run "
    "a program hardened (sealkit run app.py: the process is named app.py) and "
    "audit it (sealkit audit --comm app.py); sealkit check says what this host "
    "supports."
)
"""Shown under the table, on a terminal only, when no audited process has
sealed memory: what a first audit of a stock host shows, and what to do next."""
