"""``sealkit fuzz``: a differential fuzzing campaign, the linux model against the kernel.

Random calls biased toward the edges run on both sides; every result and every
layout is compared (what is compared when is printed with the summary). Each
divergence is shrunk to a minimal trace, printed in the text form ready for
``sealkit replay FILE --diff``. Exit 1 when a divergence was found.
"""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ...fidelity.fuzz import EXCLUDED, UNDEFINED, VERIFIED, CampaignResult, campaign
from ...fidelity.target import MAX_PAGES, Window
from ..main import UsageError
from ..output import PipeConsole, console, print_json

NAME = "fuzz"
HELP = "Differential fuzzing: random calls on the linux model and the kernel, compared."
ORDER = 61


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ops", type=_positive, default=20000, metavar="N", help="calls to run (default 20000)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/fuzz.schema.json)"
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print what is compared when, what is left undefined and what is never "
        "generated, then exit (no calls are run)",
    )
    parser.add_argument(
        "--flags", choices=("end", "flag-ops", "every"), default="end",
        help="when to read VmFlags from smaps: trace end (default), after calls that can change them, every call",
    )  # fmt: skip
    parser.add_argument(
        "--exact", action="store_true", help="compare exact VMA boundaries after every call"
    )
    parser.add_argument(
        "--pages", type=_positive, default=16, metavar="N", help="window pages (default 16)"
    )
    parser.add_argument(
        "--max-found", type=_positive, default=5, metavar="K", help="stop after K divergences"
    )
    parser.add_argument(
        "--workers", type=int, choices=(1, 2, 3, 4), default=1, metavar="W",
        help="kernel workers (default 1; 2 also keeps a second core busy)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _summary(result: CampaignResult) -> Table:
    table = Table(title=f"sealkit fuzz (seed {result.seed})")
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("calls verified", f"{result.calls:,}")
    table.add_row("traces", f"{result.traces:,}")
    table.add_row("seconds", f"{result.seconds:.1f}")
    table.add_row("verified calls / s", f"{result.rate:,.0f}")
    colour = "red" if result.found else "green"
    table.add_row("divergences", f"[{colour}]{len(result.found)}[/]")
    table.add_row("worker deaths", str(result.deaths))
    table.add_row("workers / runners", f"{result.workers} / {result.runners}")
    table.add_row("window", f"p0..p{result.window.pages}, h0..h{result.window.heap_pages}")
    table.add_row(
        "VmFlags read", result.flags + (", exact boundaries everywhere" if result.exact else "")
    )
    table.add_row("compared", "see `sealkit fuzz --explain`")
    return table


def _explain() -> int:
    out = console()
    verified = Table(title="what is compared, and when")
    verified.add_column("when", overflow="fold")
    verified.add_column("what", overflow="fold")
    for when, what in VERIFIED.items():
        verified.add_row(escape(when), escape(what))
    out.print(verified)
    undefined = Table(title="left undefined by the kernel (how the fuzzer treats them)")
    undefined.add_column("case", overflow="fold")
    undefined.add_column("treatment", overflow="fold")
    for case, how in UNDEFINED:
        undefined.add_row(escape(case), escape(how))
    out.print(undefined)
    excluded = Table(title="never generated")
    excluded.add_column("case", overflow="fold")
    excluded.add_column("why", overflow="fold")
    for case, why in EXCLUDED:
        excluded.add_row(escape(case), escape(why))
    out.print(excluded)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.explain:
        return _explain()
    if args.pages > MAX_PAGES:
        raise UsageError(f"sealkit fuzz: --pages must be at most {MAX_PAGES}")
    window = Window(args.pages, 16)
    out = console(stderr=args.json)
    if args.json or args.no_progress:
        result = campaign(
            args.ops,
            args.seed,
            window=window,
            flags=args.flags,
            exact=args.exact,
            max_found=args.max_found,
            workers=args.workers,
        )
    else:
        columns = (
            TextColumn("[bold]fuzz[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("calls"),
            TimeRemainingColumn(),
        )  # fmt: skip
        with Progress(*columns, console=PipeConsole(stderr=True), transient=True) as bar:
            task = bar.add_task("fuzz", total=args.ops)
            result = campaign(
                args.ops, args.seed, window=window, flags=args.flags, exact=args.exact,
                max_found=args.max_found, workers=args.workers,
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
    if args.json:
        print_json("fuzz", result.to_json())
        return 1 if result.found else 0
    out.print(_summary(result))
    for k, found in enumerate(result.found, 1):
        out.print(f"\n[red bold]divergence {k}[/] ({found.calls} calls in the trace):")
        out.print(escape(found.divergence.describe()))
        out.print("[bold]shrunk trace[/] (save it and run `sealkit replay FILE --diff`):")
        out.print(escape(found.shrunk), end="")
    return 1 if result.found else 0
