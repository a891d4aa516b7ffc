"""``sealkit maps PID|self``: every mapping of one process, sealed ones highlighted.

``self`` is the ``sealkit`` process itself: a fresh Python interpreter
running this command. It shows what the kernel seals in every process
(nothing, unless the kernel was built with ``CONFIG_MSEAL_SYSTEM_MAPPINGS``,
which seals ``[vdso]``/``[vvar]``), and it is the quickest way to check that
``sealkit maps`` classifies an interpreter's libraries as you expect.
"""

# ruff: noqa: PLC0415 (imports are lazy on purpose: every command module is imported at start-up)

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...host.maps import ProcessMaps

NAME = "maps"
EXIT_WITHOUT_TEARDOWN = True  # see cli/main.py: what it built is not freed at the end
HELP = "Show every mapping of one process: range, size, perms, sealed, kind, path."
ORDER = 21


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pid", metavar="PID|self", help="a process id, or 'self' for this sealkit process"
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/maps.schema.json)"
    )
    parser.add_argument(
        "--svg", metavar="FILE", help="also draw the address space as an SVG picture in FILE"
    )
    parser.add_argument("--sealed-only", action="store_true", help="list only sealed mappings")


def run(args: argparse.Namespace) -> int:
    from ...errors import (
        AccessDeniedError,
        ArgumentError,
        ArgumentTypeError,
        CutShortError,
        ProcessChangedError,
        ProcessGoneError,
    )
    from ...host.maps import process_maps
    from ..main import hold

    if args.svg == "-":  # not a file named "-": stdout holds the table (or the JSON)
        print("sealkit maps: --svg - : stdout holds the table; give the SVG a file name",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        maps = process_maps(args.pid)
    except (ArgumentError, ArgumentTypeError) as exc:
        print(f"sealkit maps: {exc}", file=sys.stderr)
        return 2
    except ProcessChangedError:
        print(
            f"sealkit maps: process {args.pid} replaced its program (exec) each time it was "
            "read; try again",
            file=sys.stderr,
        )
        return 1
    except ProcessGoneError:
        print(f"sealkit maps: no process {args.pid}", file=sys.stderr)
        return 1
    except CutShortError as exc:
        print(f"sealkit maps: process {args.pid}: {exc.reason}", file=sys.stderr)
        return 1
    except AccessDeniedError:
        print(
            f"sealkit maps: may not read the mappings of process {args.pid} "
            "(run as root, or as its user)",
            file=sys.stderr,
        )
        return 1
    if args.svg is not None:
        from ...host.mapsvg import render_svg
        from ..output import write_output

        if not args.svg:
            print("sealkit maps: --svg needs a file name", file=sys.stderr)
            return 2
        write_output(render_svg(maps), args.svg)  # OutputError: exit code 4
    hold(maps)
    if args.json:
        from ...host.maps import maps_json

        text = maps_json(maps, sealed_only=args.sealed_only)
        hold(text)
        sys.stdout.write(text)
        return 0
    _table(maps, args.sealed_only)
    return 0


def _table(maps: ProcessMaps, sealed_only: bool) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ...text import human_size, label
    from ..output import table_console as stdout_console

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header, justify in (
        ("RANGE", "left"), ("SIZE", "right"), ("PERMS", "left"), ("SEALED", "left"),
        ("KIND", "left"), ("PATH", "left"),
    ):  # fmt: skip
        table.add_column(
            header,
            justify="right" if justify == "right" else "left",
            no_wrap=header != "PATH",
            overflow="fold" if header == "PATH" else "ellipsis",
        )
    for region in maps.regions:
        v = region.vma
        if sealed_only and not v.sealed:
            continue
        style = "bold green" if v.sealed else None
        table.add_row(
            f"{v.start:012x}-{v.end:012x}", human_size(v.size), v.perms,
            Text("sealed", style="bold green") if v.sealed else Text("-", style="dim"),
            region.kind, Text(label(v.path)), style=style,
        )  # fmt: skip
    console = stdout_console()
    console.print(table)
    sealed = maps.sealed
    console.print(
        Text(
            f"pid {maps.pid} ({label(maps.command)}): {len(maps.regions)} mappings, {len(sealed)} sealed "
            f"({human_size(sum(r.vma.size for r in sealed))})"
            + ("" if maps.regions else "; a kernel thread or an exited (zombie) process has none"),
            style="bold",
        )
    )
