"""``sealkit conform``: the conformance suite against the kernel and the model.

``--target kernel`` (default), ``model:POLICY`` or ``all`` (the kernel, the
``linux`` model and every other policy). Prints a table of scenarios x targets
with pass/fail and the first differing line of each failure, then counts per
source; ``--target all`` adds the policy comparison (what each design of the
2023 debate does at each scenario's key call). Exit 1 on any failure.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from rich import box
from rich.markup import escape
from rich.table import Table

from ...errors import ArgumentError, ParseError
from ...fidelity.conformance import (
    NOT_EXPRESSIBLE,
    Outcome,
    Scenario,
    load_scenarios,
    run_scenarios,
)
from ...fidelity.target import TARGET_FORMS, check_target, target_kind, target_names
from ..main import UsageError
from ..output import console as output_console
from ..output import print_json

NAME = "conform"
HELP = "Run the conformance suite against the kernel and/or the model's policies."
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", default="kernel", metavar="TARGET",
        help="kernel (default), model:POLICY (model:linux, model:mimmutable, ...) or all",
    )  # fmt: skip
    parser.add_argument("--scenario", metavar="GLOB", help="only scenarios whose name matches GLOB")
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/conform.schema.json)"
    )
    parser.add_argument(
        "--failures-only", action="store_true", help="list only failing scenarios in the table"
    )


def _targets(spec: str) -> list[str]:
    if spec == "all":
        return target_names()
    if target_kind(spec) is None:
        raise UsageError(
            f"sealkit conform: --target must be {', '.join(TARGET_FORMS)} or all, not {spec!r}"
        )
    try:
        check_target(spec)
    except ArgumentError as exc:
        raise UsageError(f"sealkit conform: {exc}") from None
    return [spec]


def _run(scenarios: list[Scenario], targets: list[str]) -> dict[str, dict[str, Outcome]]:
    results: dict[str, dict[str, Outcome]] = defaultdict(dict)
    for target in targets:
        for outcome in run_scenarios(scenarios, target):
            results[outcome.scenario][target] = outcome
    return results


def _cell(outcome: Outcome | None) -> str:
    if outcome is None:
        return ""
    if not outcome.expected:
        return f"[dim]{escape(outcome.key_result)}[/]"
    if outcome.passed:
        return "[green]pass[/]"
    return f"[red]FAIL[/] {escape(outcome.diff)}"


def _comparison(
    scenarios: list[Scenario], results: dict[str, dict[str, Outcome]], targets: list[str]
) -> Table:
    table = Table(
        title="What each design does at the key call (red: refused, green: allowed; "
        "✓/✗: matches the scenario's expectation for that design)",
        box=box.SIMPLE_HEAD, padding=(0, 1),
    )  # fmt: skip
    table.add_column("scenario", no_wrap=True)
    models = [t for t in targets if t.startswith("model:")]
    for t in ["kernel", *models]:
        table.add_column(t.removeprefix("model:"), no_wrap=True)
    for sc in scenarios:
        if not sc.policies:
            continue
        row = [escape(sc.name.removeprefix("debate/"))]
        for t in ["kernel", *models]:
            o = results[sc.name].get(t)
            if o is None:
                row.append("")
                continue
            key = o.key_result
            colour = "red" if key.startswith("E") else "green"
            verdict = "" if not o.expected else (" ✓" if o.passed else " ✗")
            row.append(f"[{colour}]{escape(key)}[/]{verdict}")
        table.add_row(*row)
    return table


def run(args: argparse.Namespace) -> int:
    targets = _targets(args.target)
    try:
        scenarios = load_scenarios(args.scenario)
    except ParseError as exc:
        raise UsageError(f"sealkit conform: bad scenario file: {exc}") from None
    if not scenarios:
        raise UsageError(f"sealkit conform: no scenario matches {args.scenario!r}")
    results = _run(scenarios, targets)
    failed = sum(
        1 for sc in scenarios for o in results[sc.name].values() if o.expected and not o.passed
    )
    counts: dict[str, Counter[str]] = {t: Counter() for t in targets}
    families: dict[str, Counter[str]] = defaultdict(Counter)
    for sc in scenarios:
        families[sc.family]["scenarios"] += 1
        for t, o in results[sc.name].items():
            status = "n/a" if not o.expected else ("pass" if o.passed else "fail")
            counts[t][status] += 1
            families[sc.family][f"{t} {status}"] += 1
    if args.json:
        payload = {
            "targets": targets,
            "scenarios": [
                {
                    "name": sc.name,
                    "source": sc.source,
                    "note": sc.note,
                    "results": {t: o.to_json() for t, o in results[sc.name].items()},
                }
                for sc in scenarios
            ],
            "summary": {t: dict(c) for t, c in counts.items()},
            "by_source": {f: dict(c) for f, c in families.items()},
            "not_expressible": [{"case": a, "why": b} for a, b in NOT_EXPRESSIBLE],
            "failed": failed,
        }
        print_json("conform", payload)
        return 1 if failed else 0
    console = output_console()
    shown = [t for t in targets if t in ("kernel", "model:linux")] or targets
    table = Table(title=f"sealkit conform ({len(scenarios)} scenarios)")
    table.add_column("scenario", overflow="fold")
    table.add_column("source", overflow="fold")
    for t in shown:
        table.add_column(t, overflow="fold")
    for sc in scenarios:
        cells = [_cell(results[sc.name].get(t)) for t in shown]
        bad = any(o.expected and not o.passed for o in results[sc.name].values())
        if args.failures_only and not bad:
            continue
        table.add_row(escape(sc.name), escape(sc.source), *cells)
    console.print(table)
    if any(t.startswith("model:") and t != "model:linux" for t in targets):
        console.print(_comparison(scenarios, results, targets))
    summary = Table(title="by source")
    summary.add_column("source")
    summary.add_column("scenarios", justify="right")
    for t in targets:
        summary.add_column(t.removeprefix("model:") if len(targets) > 2 else t, justify="right")
    for family, c in sorted(families.items()):
        cells = []
        for t in targets:
            judged = c[f"{t} pass"] + c[f"{t} fail"]
            cells.append(f"{c[f'{t} pass']}/{judged}" if judged else "n/a")
        summary.add_row(family, str(c["scenarios"]), *cells)
    console.print(summary)
    line = ", ".join(
        f"{t}: {c['pass']} passed, {c['fail']} failed"
        + (f", {c['n/a']} not judged" if c["n/a"] else "")
        for t, c in counts.items()
    )
    console.print(("[red]" if failed else "[green]") + escape(line) + "[/]")
    return 1 if failed else 0
