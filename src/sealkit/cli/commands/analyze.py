"""``sealkit analyze``: the shortest way around each sealing design.

A table policy x property: the shortest call sequence that breaks the
property (with before/after pictures of the arena) or the depth it holds
to. ``--replay`` runs every ``linux`` counterexample on the running kernel.
``--explain POLICY`` lists the policy's choices and, for each rule no source
settles, both readings with what the analyzer finds for each.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ...analysis import (
    DEBATE_POLICIES,
    SCENARIOS,
    PolicySpec,
    Property,
    Report,
    analyze,
    parse_policy,
    picture,
)
from ...analysis.alphabet import parse_attacker
from ...analysis.attackers import attacker_text
from ...analysis.search import DEFAULT_MAX_STATES
from ...errors import ArgumentError
from ..output import PipeConsole, console, print_json

NAME = "analyze"
HELP = "search call sequences for the shortest way around each sealing design"
ORDER = 60

MAX_DEPTH = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        action="append",
        metavar="P",
        help=(
            "policy to analyze, with an optional variant (seal types and a reading, joined "
            "with +): linux, linux-6.10, linux-6.10.y, "
            "proposal-v1[:mseal+mprotect+munmap+mmap+mremap+merge-as-coded], "
            "proposal-v3[:seal+base+prot_pkey+discard_ro_anon], "
            "mimmutable[:permissive-advice], mimmutable-7.3, "
            "chrome-split[:unmap|prot+unmap-refuses-discard], none (repeatable; default: the "
            f"designs of the 2023 debate: {', '.join(DEBATE_POLICIES)})"
        ),
    )
    parser.add_argument(
        "--explain",
        metavar="P",
        help=(
            "list policy P's choices and every rule no source settles for it, with the reading "
            "taken and both readings' results (computed at --depth)"
        ),
    )
    parser.add_argument(
        "--property",
        action="append",
        choices=[p.value for p in Property],
        help="property to check (repeatable; default: all three)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=2,
        help=f"longest call sequence to try (0-{MAX_DEPTH}; default 2)",
    )
    parser.add_argument(
        "--scenario", default="default", help=f"starting scenario ({', '.join(SCENARIOS)})"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: one per available core)",
    )
    parser.add_argument(
        "--max-states",
        type=int,
        default=DEFAULT_MAX_STATES,
        metavar="N",
        help=(
            "stop a search that would keep more than N states: the depth it got to is judged "
            f"in full and reported, the next is not tried (default {DEFAULT_MAX_STATES:,}, "
            "measured at 1.7 GB in this process and 3.7 GB with two workers; linux passes it "
            "at depth 4)"
        ),
    )
    parser.add_argument(
        "--attacker",
        action="append",
        metavar="A",
        help=(
            "attacker profile: syscalls (the process's own mm calls, the default) plus any of "
            "+procmem (/proc/PID/mem, process_vm_writev), +ptrace (PTRACE_POKEDATA), +file-write "
            "(write, truncate or punch the backing file); comma-separated or repeated, e.g. "
            "--attacker +procmem,+file-write"
        ),
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="apply every call to every state (no locality cache; slow, for cross-checking)",
    )
    parser.add_argument(
        "--fork",
        action="store_true",
        help="put fork() in the alphabet (properties then judged in the process the trace ends in)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="JSON (schema: sealkit/data/analyze.schema.json; with --explain, analyze-explain.schema.json)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="run every linux counterexample on the running kernel and mark it confirmed or refuted",
    )


def _specs(args: argparse.Namespace) -> list[PolicySpec]:
    specs = []
    for name in args.policy or list(DEBATE_POLICIES):
        spec = parse_policy(name)
        if spec not in specs:
            specs.append(spec)
    return specs


def _usage(message: str) -> int:
    print(f"sealkit analyze: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.depth <= MAX_DEPTH:
        return _usage(f"--depth must be between 0 and {MAX_DEPTH}, got {args.depth}")
    if args.max_states < 1:
        return _usage(f"--max-states must be at least 1, got {args.max_states}")
    if args.workers is not None and args.workers < 1:
        return _usage(f"--workers must be at least 1, got {args.workers}")
    if args.scenario not in SCENARIOS:
        return _usage(f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})")
    if args.explain is not None and (args.policy or args.replay or args.fork or args.exact):
        return _usage("--explain takes one policy and no --policy, --replay, --fork or --exact")
    try:
        specs = [parse_policy(args.explain)] if args.explain is not None else _specs(args)
        attacker = parse_attacker(args.attacker)
    except ArgumentError as exc:
        return _usage(str(exc))
    props = [Property(p) for p in dict.fromkeys(args.property or [p.value for p in Property])]
    if args.explain is not None:
        return _explain(args, specs[0], props)
    if "file-write" in attacker and args.depth >= 2 and not args.exact:
        print(
            "sealkit analyze: note: with +file-write past depth 1 the search's cache does not see "
            "file data no mapping shows; findings are re-checked, 'holds' is exact only with --exact",
            file=sys.stderr,
        )
    err = PipeConsole(stderr=True)
    show = err.is_terminal and not args.json
    with err.status("analyzing", spinner="dots") if show else _Null() as status:

        def progress(policy: str, level: int, done: int, total: int) -> None:
            if status is not None:
                status.update(f"{policy}: depth {level}, {done:,}/{total:,} states expanded")

        report = analyze(
            specs,
            props,
            args.depth,
            SCENARIOS[args.scenario],
            workers=args.workers,
            cache=not args.exact,
            include_fork=args.fork,
            progress=progress,
            attacker=attacker,
            max_states=args.max_states,
        )
    for pol in report.policies:
        if pol.stats.cut:
            print(
                f"sealkit analyze: {pol.spec.name}: depth {pol.stats.cut} not finished: it needs "
                f"more than {args.max_states:,} states (--max-states); results stand to depth "
                f"{pol.stats.cut - 1}",
                file=sys.stderr,
            )
    refuted = 0
    if args.replay:
        from ...analysis.replay import replay_report  # noqa: PLC0415  (needs the kernel executor)

        report, refuted = replay_report(report)
    if args.json:
        print_json("analyze", report.to_json())
    else:
        _print(report)
    return 1 if refuted else 0


def _explain(args: argparse.Namespace, spec: PolicySpec, props: list[Property]) -> int:
    from ...analysis.explain import explain  # noqa: PLC0415

    err = PipeConsole(stderr=True)
    show = err.is_terminal and not args.json
    with err.status("analyzing both readings", spinner="dots") if show else _Null():
        found = explain(spec, props, args.depth, SCENARIOS[args.scenario], workers=args.workers)
    if args.json:
        print_json("analyze-explain", found.to_json())
        return 0
    out = console()
    policy = found.policy
    out.print(f"[bold]{spec.name}[/]: {policy.summary}")
    out.print(f"source: {policy.source}")
    out.print(f"\n[bold]Rules no source settles[/] ({len(found.choices) or 'none'})")
    for choice in found.choices:
        rule = choice.rule
        out.print(f"\n[bold]{rule.key}[/] {rule.question}")
        out.print(f"  taken ({choice.chosen.spec.name}): {rule.reading}")
        out.print(f"  other ({choice.other.spec.name}): {rule.other_reading}")
        out.print(f"  why the default is the default: {rule.why}")
        table = Table(
            title=f"{found.report.scenario.name} scenario, depth {found.report.depth}",
            show_lines=True,
        )
        table.add_column("reading", style="bold")
        for prop in found.report.properties:
            table.add_column(f"{prop.value} integrity")
        for row in (choice.chosen, choice.other):
            cells = []
            for prop in found.report.properties:
                verdict = row.verdicts[prop]
                text = Text(verdict.cell(), style="bold red" if verdict.broken else "green")
                if verdict.counterexample is not None:
                    for step in verdict.counterexample.attack:
                        text.append("\n" + _short(step), style="red")
                cells.append(text)
            label = ("taken: " if row is choice.chosen else "other: ") + row.spec.name
            table.add_row(label, *cells)
        out.print(table)
    out.print("\n[bold]Choices[/] (how the design is put on a Linux address space, with sources)")
    for choice_text in policy.choices:
        out.print(f"  - {choice_text}")
    return 0


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _cell(report: Report, policy_index: int, prop: Property) -> Text:
    verdict = report.policies[policy_index].verdicts[prop]
    if verdict.counterexample is None:
        return Text(verdict.cell(), style="green")
    c = verdict.counterexample
    text = Text(verdict.cell(), style="bold red")
    for step in c.attack:
        text.append("\n" + _short(step), style="red")
    if verdict.replay is not None:
        text.append(
            f"\nkernel: {verdict.replay.status}", style=_replay_style(verdict.replay.status)
        )
    return text


def _short(step: Any) -> str:
    from ...ops import format_step  # noqa: PLC0415

    return " ".join(format_step(step).split())


def _replay_style(status: str) -> str:
    return {"confirmed": "bold green", "refuted": "bold red"}.get(status, "yellow")


def _print(report: Report) -> None:
    out = console()
    scenario = report.scenario
    out.print(f"[bold]scenario[/] {scenario.name}: {scenario.description}")
    out.print(f"[bold]attacker[/] {attacker_text(report.attacker)}")
    first = report.policies[0].before if report.policies else None
    if first is not None:
        out.print(Text(picture(first)))
    table = Table(title=f"shortest way around each design (depth {report.depth})", show_lines=True)
    table.add_column("policy", style="bold")
    table.add_column("promise")
    for prop in report.properties:
        table.add_column(f"{prop.value} integrity")
    for i, pol in enumerate(report.policies):
        table.add_row(
            pol.spec.name,
            f"perm: {pol.promise.value}\n{pol.stats.states:,} states\n{pol.stats.seconds:.1f}s",
            *[_cell(report, i, prop) for prop in report.properties],
        )
    out.print(table)
    for pol in report.policies:
        for prop, verdict in pol.verdicts.items():
            c = verdict.counterexample
            if c is None:
                continue
            body = [
                Text(c.violation.summary(), style="bold"),
                Text("\n".join(c.violation.details)),
                Text(f"to stop it: {c.needed()}", style="italic"),
                Text(""),
                Text(c.attack_text().rstrip(), style="cyan"),
                Text(""),
                Text(c.picture()),
            ]
            for other in verdict.others:
                body.append(
                    Text(
                        f"\nalso: {' | '.join(' '.join(line.split()) for line in other.attack_text().splitlines())}"
                        f"  ({other.violation.summary()})",
                        style="cyan",
                    )
                )
            alt = ", ".join(f"{n} {name}" for name, n in c.alternatives.items())
            if alt:
                body.append(Text(f"\n(state, call) pairs at this depth that break it: {alt}"))
            if verdict.replay is not None:
                body.append(
                    Text(f"\nkernel replay: {verdict.replay.status}: {verdict.replay.detail}")
                )
            out.print(
                Panel(Group(*body), title=f"{pol.spec.name}: {prop.value} integrity", expand=False)
            )
