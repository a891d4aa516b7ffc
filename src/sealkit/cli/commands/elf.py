"""``sealkit elf PATH...``: the sealing marker and checksec's columns, file by file.

Rows are written as files are read (``-r`` of a large tree starts printing
at once; ``--json`` streams its ``files`` array the same way), with
progress on stderr (:class:`Progress`: the audit's rule). Files that cannot be
read get one line each on stderr; a summary of the verdicts closes the run
(on stderr for the table, in the document for ``--json``). Paths that are
not ELF files (shell scripts in ``/usr/bin``, a directory without ``-r``)
are skipped and counted, not errors, unless ``--require elf``.
"""

# ruff: noqa: PLC0415 (imports are lazy on purpose: every command module is imported at start-up)

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ...host.elf import ElfReport

NAME = "elf"
HELP = (
    "Show whether ELF files carry GNU_PROPERTY_MEMORY_SEAL, with checksec's columns "
    "(RELRO, BIND_NOW, PIE, NX, canary, FORTIFY, RPATH, RUNPATH, TEXTREL, symbols, CET)."
)
ORDER = 22

REQUIREMENTS = (
    "memory-seal", "full-relro", "bind-now", "pie", "nx", "canary", "fortify", "no-rpath",
    "no-runpath", "no-textrel", "stripped", "ibt", "shstk", "elf",
)  # fmt: skip

EPILOG = """\
columns: MEMORY SEAL, RELRO (full/partial/no), BIND_NOW, PIE (yes/no/dso/rel), NX,
CANARY, FORTIFY (fortified/fortifiable functions), RPATH, RUNPATH, TEXTREL,
SYMTAB (yes: not stripped), CET (ibt+shstk/ibt/shstk/no), class, file. n/a: does
not apply (RELRO of an object file, CET of a non-x86 file); ?: could not be read
(--json says why).

MEMORY SEAL: yes (the loader's walk of PT_GNU_PROPERTY reaches property 3 with
pr_datasz 0), ignored (present, but the loader would not honour it: the detail
says why), section-only (only the .note.gnu.property section has it: no loader
reads sections), no.

requirements (--require, repeatable; each unmet one prints one line):
  memory-seal  full-relro  bind-now  pie (executables: PIE; libraries pass)  nx
  canary  fortify (no plain call to a fortifiable function without a fortified
  one)  no-rpath  no-runpath  no-textrel  stripped  ibt  shstk
  elf (every path is an ELF file: scripts and directories fail it)
A requirement that does not apply to a file (n/a) holds for it; one that could
not be read (?) does not.

exit codes: 0 every ELF file was read (and every requirement holds); 1 a file
could not be read (one line each on stderr), a requirement is not met, or no ELF
file was found at all; 2 bad usage. Paths that are not ELF files are skipped and
counted in the summary (a directory named without -r also gets a line on
stderr). With -r, files in directories that do not start with the ELF magic are
not listed.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="ELF files (or directories with -r)"
    )
    parser.add_argument("-r", "--recursive", action="store_true", help="walk directories")
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/elf.schema.json)"
    )
    parser.add_argument(
        "--progress", choices=("auto", "always", "never"), default="auto",
        help="progress on stderr: auto (a line rewritten in place on a terminal after half a "
        "second; elsewhere a line every 10 s once the run has lasted 10 s), always, or never",
    )  # fmt: skip
    parser.add_argument(
        "--require", action="append", default=[], choices=REQUIREMENTS, metavar="REQ",
        help=f"exit 1 unless every file has REQ ({', '.join(REQUIREMENTS)}; repeatable)",
    )  # fmt: skip


def unmet(report: ElfReport, requirement: str) -> bool:
    """Whether a readable ELF file fails ``requirement`` (``elf`` never does)."""
    na = report.not_applicable
    unknown = dict(report.unknown)
    if requirement == "memory-seal":
        return not report.marked
    if requirement == "full-relro":
        return "relro" not in na and report.relro != "full"
    if requirement == "bind-now":
        return "bind_now" not in na and report.bind_now is not True
    if requirement == "pie":
        return report.pie == "no"
    if requirement == "nx":
        return report.nx is not True
    if requirement == "canary":
        return report.canary is not True
    if requirement == "fortify":
        if report.fortified is None or report.fortifiable is None:
            return True
        return report.fortified == 0 and report.fortifiable > 0
    if requirement in ("no-rpath", "no-runpath"):
        column = requirement.removeprefix("no-")
        return column not in na and (getattr(report, column) is not None or column in unknown)
    if requirement == "no-textrel":
        return "textrel" not in na and report.textrel is not False
    if requirement == "stripped":
        return report.stripped is not True
    if requirement in ("ibt", "shstk"):
        return requirement not in na and getattr(report, requirement) is not True
    return False


# --- the table: one fixed-width line per file, written as it is read ----------

COLUMNS = (
    ("MEMORY SEAL", 12), ("RELRO", 7), ("BIND_NOW", 8), ("PIE", 4), ("NX", 3), ("CANARY", 6),
    ("FORTIFY", 7), ("RPATH", 5), ("RUNPATH", 7), ("TEXTREL", 7), ("SYMTAB", 6), ("CET", 9),
    ("CLASS", 15), ("FILE", 0),
)  # fmt: skip


def _cells(report: ElfReport) -> list[tuple[str, str]]:
    """(text, style) for each column of a readable file."""
    na = report.not_applicable

    def value(column: str, text: str | None, style: str) -> tuple[str, str]:
        if text is None:
            return ("n/a", "dim") if column in na else ("?", "yellow")
        return text, style

    def flag(column: str, on: bool | None, good: bool = True) -> tuple[str, str]:
        if on is None:
            return value(column, None, "")
        return ("yes" if on else "no"), "green" if on is good else "red"

    marker = report.seal_marker or "?"
    relro_style = {"full": "green", "partial": "yellow"}.get(report.relro or "", "red")
    pie_style = {"yes": "green", "dso": "blue", "rel": "dim"}.get(report.pie or "", "red")
    if report.fortified is None or report.fortifiable is None:
        fortify = value("fortified", None, "")
    else:
        fortify = (
            f"{report.fortified}/{report.fortifiable}",
            "green" if report.fortified else ("red" if report.fortifiable else "dim"),
        )
    if report.ibt is None or report.shstk is None:
        cet = value("ibt", None, "")
    else:
        parts = [name for name, on in (("ibt", report.ibt), ("shstk", report.shstk)) if on]
        cet = (
            "+".join(parts) or "no",
            "green" if len(parts) == 2 else ("yellow" if parts else "red"),
        )
    endian = "LE" if report.endian == "little" else "BE"
    return [
        (marker, {"yes": "bold green", "no": "red"}.get(marker, "yellow")),
        value("relro", report.relro, relro_style),
        flag("bind_now", report.bind_now),
        value("pie", report.pie, pie_style),
        flag("nx", report.nx),
        flag("canary", report.canary),
        fortify,
        value("rpath", None if "rpath" in na else ("yes" if report.rpath else "no"),
              "red" if report.rpath else "green"),
        value("runpath", None if "runpath" in na else ("yes" if report.runpath else "no"),
              "red" if report.runpath else "green"),
        flag("textrel", report.textrel, good=False),
        flag("stripped", None if report.stripped is None else not report.stripped, good=False),
        cet,
        (f"ELF{report.elfclass} {endian} {report.machine}", ""),
    ]  # fmt: skip


def _row(report: ElfReport) -> Text:
    from rich.text import Text

    from ...text import printable

    line = Text()
    for (text, style), (_, width) in zip(_cells(report), COLUMNS, strict=False):
        line.append(text.ljust(width), style=style)
        line.append("  ")
    line.append(printable(report.path))
    if report.seal_detail:
        line.append(f"  (memory seal {report.seal_marker}: {report.seal_detail})", style="yellow")
    return line


def _header() -> Text:
    from rich.text import Text

    return Text("  ".join(name.ljust(width) for name, width in COLUMNS).rstrip(), style="bold")


CLOCK: Callable[[], float] = time.monotonic


class Progress:
    """Progress on stderr, by the audit's rule (``--progress``).

    On a terminal, one line rewritten in place (after half a second, or at
    once with ``always``) and erased before anything else is written. Written
    to a file or a pipe (cron, a CI log), a plain line every 10 s once the
    run has lasted 10 s (every second with ``always``), and one more at the
    end when any was printed, so a long ``-r`` whose stderr is a log still
    says where it is. ``never``: nothing.
    """

    REDRAW = 0.1
    TERMINAL_AFTER = 0.5
    LINE_EVERY = 10.0
    LINE_EVERY_ALWAYS = 1.0

    def __init__(
        self, stream: IO[str], mode: str = "auto", clock: Callable[[], float] | None = None
    ) -> None:
        self.stream = stream
        self.mode = mode
        self.clock = clock or CLOCK
        self.started = self.clock()
        try:
            self.terminal = stream.isatty()
        except (ValueError, OSError):  # a closed or odd stream
            self.terminal = False
        self.shown = False  # a terminal line is on the screen
        self.lines = 0  # plain lines printed
        self.last = self.started
        every = self.LINE_EVERY_ALWAYS if mode == "always" else self.LINE_EVERY
        self.next_line = self.started + every
        self.walked = self.files = self.errors = 0

    def _text(self, now: float) -> str:
        return (
            f"sealkit elf: {self.walked} paths examined, {self.files} ELF files, "
            f"{self.errors} errors, {now - self.started:.0f} s"
        )

    def update(self) -> None:
        if self.mode == "never":
            return
        now = self.clock()
        if not self.terminal:
            if now >= self.next_line:
                self._line(now)
                every = self.LINE_EVERY_ALWAYS if self.mode == "always" else self.LINE_EVERY
                self.next_line = now + every
            return
        if not self.shown and self.mode != "always" and now - self.started < self.TERMINAL_AFTER:
            return
        if self.shown and now - self.last < self.REDRAW:
            return
        self.last = now
        self.stream.write(f"\r\x1b[K{self._text(now)}")
        self.stream.flush()
        self.shown = True

    def _line(self, now: float) -> None:
        self.stream.write(self._text(now) + "\n")
        self.stream.flush()
        self.lines += 1

    def clear(self) -> None:
        """Erase the terminal line (before a row, an error line, the summary)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        """Erase the terminal line; after plain lines, one more with the totals."""
        self.clear()
        if not self.terminal and self.lines:
            self._line(self.clock())


def run(args: argparse.Namespace) -> int:
    import json

    from ...host import elf
    from ...text import printable
    from ..output import table_console

    requirements = list(dict.fromkeys(args.require))
    progress = Progress(sys.stderr, args.progress)
    console: Console | None = None if args.json else table_console()
    files = errors = 0
    markers = {"yes": 0, "no": 0, "ignored": 0, "section-only": 0}
    skipped: list[dict[str, str]] = []
    unmet_by: dict[str, list[str]] = {req: [] for req in requirements}
    first_row = True

    def emit_row(report: ElfReport) -> None:
        nonlocal first_row
        progress.clear()
        if args.json:
            sys.stdout.write(("" if first_row else ",\n") + json.dumps(report.as_dict()))
            sys.stdout.flush()
        else:
            assert console is not None
            if first_row:
                console.print(_header(), soft_wrap=True, highlight=False)
            console.print(_row(report), soft_wrap=True, highlight=False)
            console.file.flush()
        first_row = False

    def error_line(path: str, message: str) -> None:
        nonlocal errors
        errors += 1
        progress.errors = errors
        progress.clear()
        print(f"sealkit elf: {printable(path)}: {message}", file=sys.stderr, flush=True)

    def entry() -> None:
        progress.walked += 1
        progress.update()

    if args.json:
        head = {"schema": "sealkit.elf/2", "note": elf.NOT_ENFORCED_NOTE}
        sys.stdout.write(json.dumps(head, indent=1)[:-2] + ',\n "files": [\n')
    for path, named in elf.iter_paths(args.paths, args.recursive, on_entry=entry,
                                       on_error=error_line):  # fmt: skip
        if named:
            progress.walked += 1
            progress.update()
        report = elf.inspect(path)
        if report.skipped:
            skipped.append({"path": report.path, "reason": report.error or ""})
            if "elf" in unmet_by:
                unmet_by["elf"].append(report.path)
            if named and os.path.isdir(path):  # a forgotten -r: say so, not an error
                progress.clear()
                print(f"sealkit elf: {printable(path)}: {report.error}", file=sys.stderr)
            continue
        if report.error is not None:
            error_line(report.path, report.error)
            if args.json:
                emit_row(report)
            continue
        files += 1
        progress.files = files
        markers[report.seal_marker or "no"] += 1
        for requirement in requirements:
            if unmet(report, requirement):
                unmet_by[requirement].append(report.path)
        emit_row(report)
        progress.update()
    progress.close()

    failures: list[str] = []
    for requirement, bad in unmet_by.items():
        if bad:
            total = files + (len(skipped) if requirement == "elf" else 0)
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            failures.append(
                f"requirement {requirement} not met by {len(bad)} of {total} files "
                f"({', '.join(printable(p) for p in bad[:3])}{more})"
            )
    summary: dict[str, Any] = {
        "elf_files": files, "errors": errors, "skipped": len(skipped), "memory_seal": markers,
    }  # fmt: skip
    if args.json:
        tail = {
            "skipped": skipped,
            "requirements": [
                {"requirement": req, "met": not bad, "unmet_by": bad}
                for req, bad in unmet_by.items()
            ],
            "summary": summary,
            "fortify_reference": elf.c_library(),
        }
        sys.stdout.write("\n ],\n" + json.dumps(tail, indent=1)[2:] + "\n")
        sys.stdout.flush()
    elif files:
        assert console is not None
        from rich.text import Text

        console.print(Text(f"note: {elf.NOT_ENFORCED_NOTE}", style="italic"))
    for failure in failures:
        print(f"sealkit elf: {failure}", file=sys.stderr)
    # Nothing read at all (a directory without -r, only scripts): exit 1, so
    # that `--require canary build/` cannot pass on an empty set.
    nothing = not files and not errors
    if nothing:
        why = f" ({len(skipped)} skipped: not ELF)" if skipped else ""
        print(f"sealkit elf: no ELF file found{why}", file=sys.stderr)
    elif not args.json:
        print(
            f"sealkit elf: {_summary_line(files, errors, len(skipped), markers)}", file=sys.stderr
        )
    return 1 if failures or errors or nothing else 0


def _summary_line(files: int, errors: int, skipped: int, markers: dict[str, int]) -> str:
    seal = ", ".join(f"{name} {count}" for name, count in markers.items())
    line = (
        f"{files} ELF file{'' if files == 1 else 's'}: memory seal {seal}; "
        f"{errors} error{'' if errors == 1 else 's'}"
    )
    if skipped:
        line += f"; {skipped} skipped (not ELF: --require elf makes them fail)"
    return line
