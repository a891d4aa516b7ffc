"""Regenerate (or check) the analyzer's sections of ``docs/debate.md``.

::

    PYTHONPATH=src python -m sealkit.analysis.debate docs/debate.md          # rewrite
    PYTHONPATH=src python -m sealkit.analysis.debate docs/debate.md --check  # exit 1 if stale

The document is hand-written prose with generated sections between
``<!-- BEGIN analyze:NAME -->`` and ``<!-- END analyze:NAME -->`` markers:

* ``table``: the policy x property table at :data:`DOC_DEPTH`, rendered from
  the results record (:func:`table_record`), which the command also writes
  next to the document (``docs/debate-results.json``) so that a fast test can
  check the committed table against it and a slow one the record against a
  fresh analysis;
* ``unsettled``: for each rule no source settles, both readings' rows;
* ``scenario``: the starting scenario (setup trace and picture);
* ``alphabet``: the attacker alphabet's size per call, for ``linux``;
* ``trace:POLICY:PROPERTY``: each counterexample: the attack with the
  model's results, what broke, and the arena before and after;
* ``fork:POLICY:mapping``: the same search with ``fork`` in the alphabet
  (:data:`FORK_POLICIES`);
* ``nocover``: content integrity for every design with the attacker
  profiles ``+procmem``, ``+ptrace`` and ``+file-write`` (depth
  :data:`NOCOVER_DEPTH`): the shortest attack each capability adds, and what
  would stop it instead of a seal;
* ``replay``: the ``linux`` counterexamples replayed on the running kernel
  (written only when the kernel has mseal; not compared by the test, which
  may run elsewhere).

Everything generated is deterministic (no timings), so a test can check
that the document still matches the analyzer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..ops import ATTACKERS, attacker_of, format_trace
from .alphabet import parse_attacker
from .analyzer import (
    PolicyReport,
    Report,
    Verdict,
    analyze,
    analyze_policy,
    default_workers,
    picture,
)
from .attackers import needed_seal
from .properties import Property
from .scenario import DEBATE_POLICIES, DEFAULT_SCENARIO, parse_policy
from .search import call_kind

__all__ = [
    "COMMAND",
    "DOC_DEPTH",
    "FORK_POLICIES",
    "RECORD",
    "blocks_for",
    "extract",
    "fork_blocks",
    "main",
    "nocover_report",
    "render_nocover",
    "render_record",
    "render_replays",
    "render_table",
    "render_trace",
    "render_unsettled",
    "row_record",
    "splice",
    "table_record",
    "trace_block",
    "trace_depth",
    "unsettled_pairs",
]

DOC_DEPTH: Final = 3
NOCOVER_DEPTH: Final = 1
"""The "What no seal covers" section's depth: every capability breaks
content integrity of every design in one call."""
NOCOVER_COMMAND: Final = (
    "sealkit analyze --attacker +procmem,+ptrace,+file-write --property content --depth 1"
)
COMMAND: Final = "PYTHONPATH=src python -m sealkit.analysis.debate docs/debate.md"
RECORD: Final = "debate-results.json"
"""The results record's file name, next to the document."""

_BLOCK_RE: Final = re.compile(
    r"(<!-- BEGIN analyze:(?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- END analyze:(?P=name) -->)",
    re.S,
)


def _verdict_record(verdict: Verdict) -> dict[str, Any]:
    c = verdict.counterexample
    if c is None:
        return {"holds_to": verdict.holds_to, "states": verdict.states}
    return {
        "length": c.length,
        "kinds": sorted(c.violation.kinds),
        "attack": [" ".join(line.split()) for line in c.attack_text().splitlines()],
    }


def row_record(pol: PolicyReport) -> dict[str, Any]:
    """One table row as plain data: the policy, its promise, each verdict."""
    return {
        "policy": pol.spec.name,
        "promise": pol.promise.value,
        "verdicts": {p.value: _verdict_record(v) for p, v in pol.verdicts.items()},
    }


def table_record(report: Report) -> dict[str, Any]:
    """The results behind the table (deterministic: no timings)."""
    return {
        "command": COMMAND,
        "scenario": report.scenario.name,
        "depth": report.depth,
        "properties": [p.value for p in report.properties],
        "rows": [row_record(pol) for pol in report.policies],
    }


def _cell(cell: dict[str, Any]) -> str:
    if "holds_to" in cell:
        return f"holds to depth {cell['holds_to']} ({cell['states']:,} states)"
    # A "|" inside a table cell must be escaped, even in a code span (GFM).
    calls = "<br>".join(f"`{line}`".replace("|", "\\|") for line in cell["attack"])
    n = cell["length"]
    kinds = ", ".join(cell["kinds"])
    return f"**broken** in {n} call{'s' if n != 1 else ''} ({kinds}):<br>{calls}"


def render_record(record: dict[str, Any]) -> str:
    """The policy x property table as Markdown, from :func:`table_record`."""
    props = record["properties"]
    head = "| policy | permission promise | " + " | ".join(f"{p} integrity" for p in props) + " |"
    rule = "|---|---|" + "---|" * len(props)
    rows = [head, rule]
    for row in record["rows"]:
        cells = [_cell(row["verdicts"][p]) for p in props]
        rows.append(f"| `{row['policy']}` | {row['promise']} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def render_table(report: Report) -> str:
    """The policy x property table as Markdown."""
    return render_record(table_record(report))


def unsettled_pairs(names: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(rule, default, other)`` for each rule no source settles whose two
    readings (same seal types) are both among ``names``, from the default side."""
    from ..model import POLICIES  # noqa: PLC0415

    pairs = []
    for name in names:
        spec = parse_policy(name)
        policy = POLICIES[spec.policy]
        if policy.reading:
            continue
        for rule in policy.unsettled:
            other = spec.reading_of(rule.other).name
            if other in names:
                pairs.append((rule.key, name, other))
    return pairs


def render_unsettled(record: dict[str, Any]) -> str:
    """Each rule no source settles with both readings' rows, from the record."""
    rows = {row["policy"]: row for row in record["rows"]}
    props = record["properties"]
    head = "| rule | reading | " + " | ".join(f"{p} integrity" for p in props) + " |"
    lines = [head, "|---|---|" + "---|" * len(props)]
    for key, chosen, other in unsettled_pairs(list(rows)):
        for name, label in ((chosen, "default"), (other, "other reading")):
            cells = " | ".join(_cell(rows[name]["verdicts"][p]) for p in props)
            lines.append(f"| {key} | `{name}` ({label}) | {cells} |")
    return "\n".join(lines) + "\n"


def render_trace(policy: PolicyReport, verdict: Verdict) -> str:
    """One counterexample: the attack, what broke, the arena before and after."""
    c = verdict.counterexample
    assert c is not None
    alt = ", ".join(f"{n} {name}" for name, n in c.alternatives.items())
    return (
        f"`{policy.spec.name}`, {c.prop.value} integrity: {c.violation.summary()}.\n\n"
        "```\n"
        f"{c.attack_text()}"
        "```\n\n"
        "```\n"
        + "\n".join(c.violation.details)
        + "\n\n"
        + c.picture()
        + "\n```\n\n"
        + f"(state, call) pairs at depth {c.length} that break it: {alt}.\n"
        + "".join(
            f"\nAlso, ending in `{call_kind(o.attack[-1].op)}`: "
            + "; ".join(f"`{' '.join(line.split())}`" for line in o.attack_text().splitlines())
            + f" ({o.violation.summary()}).\n"
            for o in verdict.others
        )
    )


def render_scenario(report: Report) -> str:
    """The starting scenario, built and sealed under ``linux``."""
    pol = next((p for p in report.policies if p.spec.name == "linux"), report.policies[0])
    return (
        f"{report.scenario.description}.\n\n"
        "```\n"
        f"{format_trace(pol.setup)}"
        "```\n\n"
        "```\n"
        f"{picture(pol.before)}\n"
        "```\n"
    )


def render_alphabet(report: Report) -> str:
    """Calls per op-language name in the ``linux`` alphabet."""
    pol = next((p for p in report.policies if p.spec.name == "linux"), report.policies[0])
    total = sum(pol.alphabet.values())
    parts = ", ".join(f"{name} {n}" for name, n in pol.alphabet.items())
    return f"{total:,} calls for `{pol.spec.name}`: {parts}.\n"


def blocks_for(report: Report, fork: Report | None = None) -> dict[str, str]:
    """Every generated section for ``report`` (and the ``fork`` aside)."""
    record = table_record(report)
    out = {
        "table": render_record(record),
        "unsettled": render_unsettled(record),
        "scenario": render_scenario(report),
        "alphabet": render_alphabet(report),
    }
    for pol in report.policies:
        for prop, verdict in pol.verdicts.items():
            if verdict.counterexample is not None:
                out[f"trace:{pol.spec.name}:{prop.value}"] = render_trace(pol, verdict)
    if fork is not None:
        out.update(fork_blocks(fork))
    return out


def fork_blocks(fork: Report) -> dict[str, str]:
    """The ``fork:POLICY:PROPERTY`` sections of the aside."""
    out = {}
    for pol in fork.policies:
        for prop, verdict in pol.verdicts.items():
            name = f"fork:{pol.spec.name}:{prop.value}"
            if verdict.counterexample is not None:
                out[name] = render_trace(pol, verdict)
            else:
                out[name] = f"`{pol.spec.name}`, {prop.value} integrity: {verdict.cell()}.\n"
    return out


def render_replays(reports: Sequence[Report]) -> str:
    """The kernel's verdict on every replayed counterexample."""
    lines = []
    for report in reports:
        for pol in report.policies:
            for prop, verdict in pol.verdicts.items():
                if verdict.replay is None or verdict.counterexample is None:
                    continue
                attack = "; ".join(
                    " ".join(line.split())
                    for line in verdict.counterexample.attack_text().splitlines()
                )
                lines.append(
                    f"- `{pol.spec.name}`, {prop.value} integrity, `{attack}`: "
                    f"**{verdict.replay.status}**: {verdict.replay.detail}."
                )
    return "\n".join(lines) + "\n" if lines else "(nothing to replay)\n"


FORK_POLICIES: Final = ("mimmutable-7.3", "mimmutable", "linux")
"""The aside's rows: mapping integrity with ``fork`` in the alphabet."""


def fork_report(
    depth: int = 2, workers: int | None = None, policies: Sequence[str] = FORK_POLICIES
) -> Report:
    """The aside: mapping integrity with ``fork`` in the alphabet."""
    return analyze(
        [parse_policy(name) for name in policies], [Property.MAPPING], depth, DEFAULT_SCENARIO,
        workers=workers, include_fork=True,
    )  # fmt: skip


def nocover_report(workers: int | None = None) -> Report:
    """Content integrity for every debate design, with every attacker capability."""
    specs = [parse_policy(name) for name in DEBATE_POLICIES]
    return analyze(
        specs, [Property.CONTENT], NOCOVER_DEPTH, DEFAULT_SCENARIO, workers=workers,
        attacker=parse_attacker([",".join(f"+{a}" for a in ATTACKERS[1:])]),
    )  # fmt: skip


def render_nocover(report: Report) -> str:
    """Per design and capability, the shortest content attack that uses the
    capability (among the shortest counterexamples, one per final call), then
    what would stop each kind of attack."""
    extra = [a for a in ATTACKERS if a != "syscalls"]
    head = "| policy | " + " | ".join(f"`+{a}`" for a in extra) + " |"
    rows = [head, "|---|" + "---|" * len(extra)]
    stoppers: dict[str, str] = {}
    for pol in report.policies:
        verdict = pol.verdicts[Property.CONTENT]
        found = [c for c in (verdict.counterexample, *verdict.others) if c is not None]
        cells = []
        for capability in extra:
            mine = [c for c in found if any(attacker_of(s.op) == capability for s in c.attack)]
            if not mine:
                cells.append(f"not by depth {report.depth}")
                continue
            cells.append(
                "; ".join(
                    f"`{' '.join(c.attack_text().split())}` ({', '.join(sorted(c.violation.kinds))}"
                    f" at {c.violation.summary().rsplit(' at ', 1)[1]})".replace("|", "\\|")
                    for c in mine
                )
            )
            for c in mine:
                stoppers.setdefault(c.attack[-1].op.NAME, needed_seal([s.op for s in c.attack]))
        rows.append(f"| `{pol.spec.name}` | " + " | ".join(cells) + " |")
    stop = "".join(f"- `{name}`: {text}.\n" for name, text in stoppers.items())
    return "\n".join(rows) + "\n\nWhat would stop each one instead of a seal:\n\n" + stop


def extract(text: str) -> dict[str, str]:
    """The generated sections present in a document."""
    return {m.group("name"): m.group("body") for m in _BLOCK_RE.finditer(text)}


def splice(text: str, blocks: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with each marked section replaced; returns the new text and
    the names of generated sections the document has no marker for."""
    present = set(extract(text))

    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        body = blocks.get(name, m.group("body"))
        return f"{m.group(1)}{body}{m.group(4)}"

    return _BLOCK_RE.sub(repl, text), sorted(set(blocks) - present)


def trace_depth(block: str) -> int:
    """The depth a ``trace:`` section's counterexample was found at."""
    m = re.search(r"pairs at depth (\d+) that break it", block)
    if m is None:
        raise ValueError(f"not a trace section: {block[:60]!r}")
    return int(m.group(1))


def trace_block(name: str, depth: int, workers: int = 1) -> str | None:
    """Regenerate section ``trace:POLICY:PROPERTY`` with a search to ``depth``
    (``None`` when the property no longer breaks by then)."""
    policy, _, prop = name.removeprefix("trace:").rpartition(":")
    report = analyze_policy(parse_policy(policy), [Property(prop)], depth=depth, workers=workers)
    verdict = report.verdicts[Property(prop)]
    return None if verdict.counterexample is None else render_trace(report, verdict)


def doc_report(depth: int = DOC_DEPTH, workers: int | None = None) -> Report:
    """The analyzer run the document is generated from."""
    specs = [parse_policy(name) for name in DEBATE_POLICIES]
    return analyze(specs, list(Property), depth, DEFAULT_SCENARIO, workers=workers)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or ``--check``) the document's generated sections."""
    parser = argparse.ArgumentParser(prog="python -m sealkit.analysis.debate")
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the document is stale")
    parser.add_argument("--depth", type=int, default=DOC_DEPTH)
    parser.add_argument(
        "--traces-only",
        action="store_true",
        help="regenerate only the trace, fork, scenario and alphabet sections (short searches)",
    )
    args = parser.parse_args(argv)
    text = args.path.read_text()
    workers = default_workers()
    if args.traces_only:
        blocks = {}
        for name, body in extract(text).items():
            if name.startswith("trace:"):
                fresh = trace_block(name, trace_depth(body), workers)
                if fresh is None:
                    print(f"{name}: no longer broken at its depth", file=sys.stderr)
                    return 1
                blocks[name] = fresh
        cheap = analyze([parse_policy("linux")], [Property.CONTENT], 1, DEFAULT_SCENARIO)
        blocks["scenario"] = render_scenario(cheap)
        blocks["alphabet"] = render_alphabet(cheap)
        blocks.update(fork_blocks(fork_report(2, workers)))
        blocks["nocover"] = render_nocover(nocover_report(workers))
        report = None
    else:
        report = doc_report(args.depth, workers)
        forked = fork_report(2, workers)
        blocks = blocks_for(report, forked)
        blocks["nocover"] = render_nocover(nocover_report(workers))
        if not args.check:
            blocks["replay"] = _replays(report, forked)
    record_path = args.path.with_name(RECORD)
    record_text = None if report is None else json.dumps(table_record(report), indent=1) + "\n"
    new, missing = splice(text, blocks)
    if missing:
        print(f"{args.path}: no marker for: {', '.join(missing)}", file=sys.stderr)
    if args.check:
        stale = new != text or (
            record_text is not None
            and (not record_path.exists() or record_path.read_text() != record_text)
        )
        print(f"{args.path}: {'stale' if stale else 'up to date'}")
        return 1 if stale or missing else 0
    args.path.write_text(new)
    if record_text is not None:
        record_path.write_text(record_text)
    took = f" ({report.seconds:.0f}s of analysis)" if report is not None else ""
    print(f"{args.path}: rewritten{took}")
    return 1 if missing else 0


def _replays(*reports: Report) -> str:
    try:
        from .replay import replay_report  # noqa: PLC0415  (needs the kernel)

        replayed = [replay_report(r)[0] for r in reports]
    except Exception as exc:  # no mseal, no executor: say so in the document
        return f"(not replayed on this machine: {type(exc).__name__}: {exc})\n"
    return render_replays(replayed)


if __name__ == "__main__":
    sys.exit(main())
