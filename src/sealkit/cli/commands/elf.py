"""``sealkit elf PATH...``: does each ELF file carry the sealing marker?"""

# ruff: noqa: PLC0415 (imports are lazy on purpose: every command module is imported at start-up)

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...host.elf import ElfReport

NAME = "elf"
HELP = "Show whether ELF files carry GNU_PROPERTY_MEMORY_SEAL, with RELRO, BIND_NOW, PIE, NX."
ORDER = 22

REQUIREMENTS = ("memory-seal", "full-relro", "bind-now", "pie", "nx")

EPILOG = """\
MEMORY SEAL: yes (the loader's walk of PT_GNU_PROPERTY reaches property 3 with
pr_datasz 0), ignored (present, but the loader would not honour it: the detail
says why), section-only (only the .note.gnu.property section has it: no loader
reads sections), no.

requirements (--require, repeatable; each unmet one prints one line):
  memory-seal  full-relro  bind-now  pie (executables: PIE; libraries pass)  nx

exit codes: 0 every file was read (and every requirement holds); 1 a file could
not be read as ELF (an error row) or a requirement is not met; 2 bad usage.
With -r, files in directories that do not start with the ELF magic are skipped;
paths named on the command line always get a row.
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
        "--require", action="append", default=[], choices=REQUIREMENTS, metavar="REQ",
        help=f"exit 1 unless every file has REQ ({', '.join(REQUIREMENTS)}; repeatable)",
    )  # fmt: skip


def _unmet(report: ElfReport, requirement: str) -> bool:
    if requirement == "memory-seal":
        return not report.marked
    if requirement == "full-relro":
        return report.relro != "full"
    if requirement == "bind-now":
        return not report.bind_now
    if requirement == "pie":
        return report.pie == "no"
    return not report.nx


def run(args: argparse.Namespace) -> int:
    from ...host.elf import NOT_ENFORCED_NOTE, inspect, iter_paths

    reports = [inspect(path) for path, _ in iter_paths(args.paths, args.recursive)]
    readable = [r for r in reports if r.error is None]
    unmet = {req: [r.path for r in readable if _unmet(r, req)] for req in args.require}
    failures: list[str] = []
    for requirement, bad in unmet.items():
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            failures.append(
                f"requirement {requirement} not met by {len(bad)} of {len(readable)} files "
                f"({', '.join(bad[:3])}{more})"
            )
    errors = [r for r in reports if r.error is not None]
    if args.json:
        import json

        doc = {
            "schema": "sealkit.elf/1",
            "note": NOT_ENFORCED_NOTE,
            "files": [r.as_dict() for r in reports],
            "requirements": [
                {"requirement": req, "met": not bad, "unmet_by": bad} for req, bad in unmet.items()
            ],
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        _table(reports, NOT_ENFORCED_NOTE)
    for failure in failures:
        print(f"sealkit elf: {failure}", file=sys.stderr)
    if not reports:
        print("sealkit elf: no ELF file found", file=sys.stderr)
    return 1 if failures or errors or not reports else 0


def _table(reports: list[ElfReport], note: str) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ...text import printable
    from ..output import table_console as stdout_console

    def yes_no(value: bool | None, good: str = "yes", bad: str = "no") -> Text:
        if value is None:
            return Text("?", style="dim")
        return Text(good, style="green") if value else Text(bad, style="red")

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in ("MEMORY SEAL", "RELRO", "BIND_NOW", "PIE", "NX", "CLASS", "FILE"):
        table.add_column(header, no_wrap=header not in ("FILE", "MEMORY SEAL"))
    for report in reports:
        if report.error is not None:
            table.add_row(
                Text("error", style="bold red"), "", "", "", "", "",
                Text(printable(f"{report.path}: {report.error}"), style="red"),
            )  # fmt: skip
            continue
        marker = report.seal_marker or "?"
        style = {"yes": "bold green", "no": "red"}.get(marker, "yellow")
        seal = Text(marker, style=style)
        if report.seal_detail:
            seal.append(f" ({report.seal_detail})", style="yellow")
        relro_style = {"full": "green", "partial": "yellow"}.get(report.relro or "", "red")
        pie_style = {"yes": "green", "dso": "blue", "rel": "dim"}.get(report.pie or "", "red")
        table.add_row(
            seal, Text(report.relro or "?", style=relro_style), yes_no(report.bind_now),
            Text(report.pie or "?", style=pie_style), yes_no(report.nx),
            Text(f"ELF{report.elfclass} {'LE' if report.endian == 'little' else 'BE'} "
                 f"{report.machine}"),
            Text(printable(report.path)),
        )  # fmt: skip
    console = stdout_console()
    if reports:
        console.print(table)
    console.print(Text(f"note: {note}", style="italic"))
