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
EXIT_WITHOUT_TEARDOWN = True  # see cli/main.py: what it built is not freed at the end
HELP = "Show which processes on this host have sealed memory, and what is sealed."
ORDER = 20

EPILOG = """\
requirements (--require, repeatable; exit code 1 and one line on stderr per unmet one):
  complete                  every process was read: none denied, cut short, unreached or
                            changing program while read, and /proc listed them all (no PID
                            namespace, no hidepid limit): a partial view proves nothing
  system                    every process has its [vdso] sealed (CONFIG_MSEAL_SYSTEM_MAPPINGS)
  sealed:PATTERN            every process whose command matches PATTERN has a sealed
                            mapping, and at least one such process was audited
  sealed:PATTERN:KIND,...   ... with sealed mappings of each KIND
kinds: text rodata relro data file heap stack anon shm system guard
what could not be known is said, never "not sealed": DENIED, CUT SHORT (a time budget or
the kernel not answering), CHANGED (it ran another program while read); zombies,
processes --timeout left unreached and processes that exit during the sweep are counted
in the summary line
exit codes: 0 ok, 1 a requirement is not met or a --pid has no process, 2 bad usage,
  3 internal error, 4 the output could not be written (-o FILE); the table is in docs/cli.md
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
        "directory renamed over it; a new FILE gets mode 0644, an existing one keeps its mode "
        "('-': stdout)",
    )  # fmt: skip
    parser.add_argument("--host", help="the host label in Prometheus output (default: uname -n)")
    parser.add_argument(
        "-j", "--jobs", type=_positive, metavar="N",
        help="reader threads (default: one per idle CPU, at most 4)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS",
        help="stop the sweep after SECONDS: a process being read is cut short, the rest are "
        "counted as unreached",
    )  # fmt: skip
    parser.add_argument(
        "--process-timeout", type=_seconds, metavar="SECONDS", default=None,
        help="time one process may take to read (default: 30); past it, it is cut short",
    )  # fmt: skip
    parser.add_argument(
        "--progress", choices=("auto", "always", "never"), default="auto",
        help="progress on stderr: auto (a bar on a terminal after half a second; elsewhere a "
        "line every 10 s once the sweep has run 10 s), always, or never",
    )  # fmt: skip


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 1e9:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"seconds must be between 0 and 1e9, not {text!r}")
    return value


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
    """Progress on stderr: on a terminal a rich bar (after half a second, or
    at once with ``always``); elsewhere a plain line every 10 s once the
    sweep has run 10 s (every second, and at the end, with ``always``), so a
    long sweep whose output goes to a file or a pipe says where it is."""

    def __init__(self, mode: str) -> None:
        import time

        self._clock = time.monotonic
        self._started = time.monotonic()
        self._always = mode == "always"
        self._tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._next_line = self._started + (1.0 if self._always else 10.0)
        self._done = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        self._done = (done, total)
        now = self._clock()
        if not self._tty:
            if now >= self._next_line:
                self._line(done, total, now)
                self._next_line = now + (1.0 if self._always else 10.0)
            return
        if self._bar is None:
            if not self._always and now - self._started < 0.5:
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

    def _line(self, done: int, total: int, now: float) -> None:
        print(
            f"sealkit audit: {done} of {total} processes audited, {now - self._started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self._tty and (self._always or self._next_line > self._started + 10.0):
            # lines were printed (or always): say how it ended
            self._line(*self._done, self._clock())


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
    from ...host.outputs import audit_json_text, to_prometheus
    from ...host.requirements import check_requirements, parse_requirement
    from ...host.sweep import DEFAULT_PROCESS_TIMEOUT, scan_host
    from ..main import EXIT_IO

    fmt = args.format or "table"
    if args.output == "-":  # as everywhere else on the command line (replay -): stdout
        args.output = None
    try:
        requirements = [parse_requirement(text) for text in args.require]
        users = _users(args.user)
    except (ArgumentError, ValueError) as exc:
        print(f"sealkit audit: {exc}", file=sys.stderr)
        return 2
    if args.output is not None and os.path.isdir(args.output):
        # Said before the sweep, not after it, in write_output's words and
        # with its exit code (docs/cli.md: a directory is exit 4, like any
        # output that cannot be written).
        print(f"sealkit audit: cannot write {args.output}: it is a directory", file=sys.stderr)
        return EXIT_IO
    progress = None if args.progress == "never" else _Progress(args.progress)
    process_timeout = (
        DEFAULT_PROCESS_TIMEOUT if args.process_timeout is None else args.process_timeout
    )
    try:
        report = scan_host(
            pids=args.pid, users=users, comm=args.comm, jobs=args.jobs, progress=progress,
            timeout=args.timeout, process_timeout=process_timeout,
        )  # fmt: skip
    finally:
        if progress is not None:
            progress.close()
    from ..main import hold

    hold(report)
    results = check_requirements(report, requirements)
    text: str | None
    if fmt == "json":
        text = audit_json_text(report, sealed_only=args.sealed_only, requirements=results)
    elif fmt == "prometheus":
        text = to_prometheus(report, results, host=args.host)
    else:
        text = _table(report, args.sealed_only, to_file=args.output is not None)
    if text is not None:
        hold(text)
        _write(text, args.output)
    for pid in report.not_found:
        print(f"sealkit audit: no process {pid}", file=sys.stderr)
    failed = [r for r in results if not r.met]
    for result in failed:
        print(f"sealkit audit: requirement {result.requirement} not met: {result.reason}",
              file=sys.stderr)  # fmt: skip
    return 1 if failed or report.not_found else 0


def _table(report: Any, sealed_only: bool, to_file: bool) -> str | None:
    """Draw the table: on stdout (returns ``None``), or as plain text for ``--output``."""
    import io

    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ...host.classify import KINDS
    from ...text import human_size, label
    from ..output import file_width
    from ..output import table_console as stdout_console

    _UNREAD = {"denied": "DENIED", "cut_short": "CUT SHORT", "changed": "CHANGED"}
    _SMAPS_DENIED = "its memory map may not be read"

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
        if sealed_only and not proc.any_sealed and proc.status == "ok":
            continue
        command = Text("?", style="yellow") if proc.command is None else Text(label(proc.command))
        if proc.status != "ok":
            why = _DENIED_WHY if proc.reason == _SMAPS_DENIED else proc.reason
            table.add_row(
                str(proc.pid), Text(label(proc.user)), command,
                Text("?", style="yellow"),
                Text(_UNREAD[proc.status], style="bold yellow"), Text("?", style="yellow"),
                Text(why, style="yellow"),
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
            str(proc.pid), Text(label(proc.user)), command, str(proc.mappings), count, size, what,
        )  # fmt: skip
    sink = io.StringIO() if to_file else None
    console = stdout_console(sink, file_width()) if sink is not None else stdout_console()
    if table.row_count:
        console.print(table)
    elif sealed_only:
        console.print("no audited process has sealed memory")
    console.print(Text(label(report.summary()), style="bold"))
    for note in report.scope.notes:
        if not note.startswith("filters "):
            console.print(Text(f"scope limited: {note}", style="yellow"))
    # nothing sealed among the processes read (all of them denied says nothing)
    read = any(p.status == "ok" for p in report.processes)
    if sink is None and report.sealed == 0 and read and sys.stdout.isatty():
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
