"""``sealkit replay TRACEFILE``: run a trace step by step on the kernel or the model.

Prints every call with its result (and the result recorded in the file, if
any) and the layout after it as an ASCII picture (one column per page: a
letter per VMA, UPPERCASE when sealed; then one content token per page).
Layout lines (``> ...``, as conformance scenarios write them) are checked
against the layout after their call. ``--diff`` runs both sides and marks
the first divergence. TRACEFILE may be ``-`` (stdin) or a FIFO. Exit 0 when
everything agrees, 1 on a divergence, a recorded result or a layout that
differs, 2 on a bad file or arguments (including a sealing call of another
design than the target's).
"""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.markup import escape

from ...errors import ArgumentError, ParseError
from ...fidelity.executor import OutsideArenaError, WorkerDiedError
from ...fidelity.replay import Replay, load_checked_trace, replay
from ...ops import Step, format_result, format_step
from ..main import UsageError
from ..output import console as output_console
from ..output import print_json

NAME = "replay"
HELP = "Replay a trace file on the kernel or the model, step by step (--diff: both)."
ORDER = 62


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "trace",
        metavar="TRACEFILE",
        help="a trace in the op language's text form (a file, a FIFO, or - for stdin); "
        "'> ...' layout lines after a call are checked",
    )
    parser.add_argument(
        "--on", default="kernel", metavar="TARGET",
        help="kernel (default) or model:POLICY (e.g. model:linux, model:mimmutable)",
    )  # fmt: skip
    parser.add_argument(
        "--diff",
        action="store_true",
        help="run on the kernel and the model; mark the first divergence",
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/replay.schema.json)"
    )


def _print(console: Console, rep: Replay) -> None:
    other = rep.other
    for i, step in enumerate(rep.steps):
        if i >= len(rep.results):
            console.print(
                f"[red]{i + 1:>3}  {escape(format_step(Step(step.op)).strip())}  (not run)[/]"
            )
            continue
        line = format_step(Step(step.op, rep.results[i])).strip()
        notes = []
        if step.result is not None and step.result != rep.results[i]:
            notes.append(f"[yellow]recorded {format_result(step.op, step.result)}[/]")
        if other is not None and i < len(other.results):
            mark = "" if other.results[i] == rep.results[i] else "[red]"
            notes.append(
                f"{mark}{other.on}: {format_result(step.op, other.results[i])}"
                + ("[/]" if mark else "")
            )
        console.print(f"[bold]{i + 1:>3}[/]  {escape(line)}  " + "  ".join(notes), end="")
        console.print()
        for zone in rep.zones:
            console.print(escape(_indent(rep.layouts[i][zone].picture(), f"     {zone}: ")))
        for check, diff in rep.checks_after(i):
            zone = "" if check.zone == "p" else f" ({check.zone})"
            if diff is None:
                console.print(f"     [green]layout{zone} as expected[/]")
            else:
                console.print(f"     [red]layout{zone} differs from the '>' lines:[/]")
                console.print(escape(_indent(diff, "       ")))
            if (
                other is not None
                and i < len(other.layouts)
                and (rep.divergence is not None and rep.divergence.step == i)
            ):
                console.print(
                    escape(_indent(other.layouts[i][zone].picture(), f"     {zone} ({other.on}): "))
                )
        if rep.divergence is not None and rep.divergence.step == i:
            console.print(f"[red]---- first divergence: {escape(rep.divergence.kind)} ----[/]")
            console.print(escape(rep.divergence.describe()))
    if rep.died:
        console.print(f"[red]the kernel run died: {escape(rep.died)}[/]")


def _indent(text: str, head: str) -> str:
    pad = " " * len(head)
    lines = text.splitlines()
    return "\n".join((head if k == 0 else pad) + line for k, line in enumerate(lines))


def run(args: argparse.Namespace) -> int:
    try:
        steps, checks = load_checked_trace(args.trace)
        rep = replay(steps, args.on, diff=args.diff, checks=checks)
    except (ParseError, ArgumentError) as exc:
        raise UsageError(f"sealkit replay: {exc}") from None
    except OutsideArenaError as exc:
        raise UsageError(f"sealkit replay: the executor refuses this trace: {exc}") from None
    except WorkerDiedError as exc:
        # One line (main prints str(exc)); the worker's traceback on request.
        if exc.detail and os.environ.get("SEALKIT_DEBUG"):
            print(exc.detail, file=sys.stderr)
        raise
    if args.json:
        print_json("replay", rep.to_json())
    else:
        _print(output_console(), rep)
    failed = (
        bool(rep.mismatches)
        or bool(rep.failed_checks)
        or rep.divergence is not None
        or rep.died is not None
    )
    return 1 if failed else 0
