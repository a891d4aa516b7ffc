"""The conformance suite: scenarios in the op language with expected results
and layouts, run against the real kernel and against the model's policies.

Scenarios
---------
Scenarios live in ``scenarios/*.toml`` (package data) and in
:mod:`sealkit.fidelity.conformance.matrix` (the measured madvise matrix, probe
case 7.1, generated from its table). Each names its source::

    [[scenario]]
    name = "selftest/seal_mprotect/sealed"
    source = "mseal_test.c: test_seal_mprotect(true)"
    trace = \"\"\"
    mmap     p0 4p r-- private|anon|fixed   = p0
    mseal    p0 4p                          = 0
    mprotect p0 4p rw-                      = EPERM   # key
    > [0,4) r--p,sl anon 0000
    \"\"\"

Each call carries its ``linux`` result (Linux 6.18 as measured); a line
starting with ``>`` (``>h`` for the heap zone) is the expected exact layout of
the window after the call above it (one line per VMA; ``(nothing mapped)``
for none). Content ``?`` matches anything; a run without content or without
``@pgoff`` does not compare them. ``# key`` marks the call the policy
comparison table shows.

Where a scenario tells the designs of the 2023 debate apart, a table
``[scenario.policy.NAME]`` gives that policy's ``results`` (one per call, the
trace's seal calls translated to the policy's own, see :func:`translate`) and
optionally its final ``layout``, or a whole ``trace`` of its own.

Targets
-------
:func:`run_scenarios` runs them on any :class:`~sealkit.fidelity.target.Target`:
``kernel`` (the kernel executor, VmFlags read at every checked step) or
``model:POLICY``. A target is asked the trace of the design it implements
(its ``policy``): Linux's own, or the policy's expectations, or the
translated trace. A scenario passes when every result and every checked
layout matches; the first difference is reported.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from ...errors import ParseError
from ...flags import MapFlag, SealV1, SealV3, SplitSeal
from ...layout import Layout, Run
from ...ops import (
    Mimmutable,
    Mmap,
    Mseal,
    MsealSplit,
    MsealV1,
    MsealV3,
    Op,
    Step,
    format_op,
    format_result,
    parse_step,
)
from ..executor import OutsideArenaError, host_refusal
from ..target import Target, Window, make_target

__all__ = [
    "NOT_EXPRESSIBLE",
    "Check",
    "Outcome",
    "PolicyExpectation",
    "Scenario",
    "load_scenarios",
    "match_layout",
    "parse_checked_trace",
    "run_scenarios",
    "translate",
]


# ------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class Check:
    """An expected layout of ``zone`` after call ``step`` (0-based)."""

    step: int
    zone: str
    layout: Layout


@dataclass(frozen=True, slots=True)
class PolicyExpectation:
    """What a non-Linux policy should do with a scenario."""

    steps: tuple[Step, ...]
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """One conformance scenario: a trace with its Linux results and layouts."""

    name: str
    source: str
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]
    window: Window = field(default_factory=Window)
    note: str = ""
    policies: dict[str, PolicyExpectation] = field(default_factory=dict)
    origin: str = ""

    @property
    def family(self) -> str:
        """The first part of the name: ``selftest``, ``ltp``, ``probe``, ``regression``..."""
        return self.name.split("/", 1)[0]

    @property
    def ops(self) -> tuple[Op, ...]:
        """The calls."""
        return tuple(s.op for s in self.steps)

    @property
    def key_step(self) -> int:
        """The call the policy comparison shows (``# key``, else the last)."""
        for i, step in enumerate(self.steps):
            if step.note.split(";")[0].strip() == "key":
                return i
        return len(self.steps) - 1


NOT_EXPRESSIBLE: Final[tuple[tuple[str, str], ...]] = (
    ("case 2.1, 2.1b", "sealing the main thread's [stack] and its growth: the "
     "stack is not in the executor's arena"),
    ("case 2.2, 2.3", "sealing / unmapping the vDSO, vvar and vvar_vclock: "
     "system mappings outside the arena"),
    ("case 4.9", "shmat(SHM_REMAP): System V shared memory is not in the op language"),
    ("case 4.10", "remap_file_pages: not in the op language"),
    ("case 5.10 (pkey_alloc part)", "pkey_alloc: the CPU has no PKU; the "
     "pkey_mprotect calls of 5.10 are covered"),
    ("case 8.2, 8.3 (glibc sbrk part)", "glibc's sbrk() reporting success on a "
     "refused shrink is libc behaviour; the raw brk calls underneath are covered"),
    ("case 9.1c", "the parent's view after the forked child exits: the op "
     "language's fork continues the trace in the child (9.1a and 9.1b are covered)"),
    ("case 11.6 (the vector)", "mincore's residency vector: which pages are in "
     "RAM, which the executor's own snapshots change; the result is compared"),
    ("limits W36", "memfd_secret: not in the op language (its pages refuse every writer "
     "and read as unreadable)"),
    ("limits M1, M2", "memfd file seals (F_ADD_SEALS): not in the op language"),
    ("limits P", "/proc/PID/mem written by the process's tracer or by another process: "
     "pwrite_mem is the process writing its own /proc/self/mem (poke is the tracer)"),
    ("limits E1 (part)", "fallocate(PUNCH_HOLE) without KEEP_SIZE (punch always keeps the "
     "size) and ftruncate to 2**63 - 1 (EFBIG on ext4, 0 on tmpfs: the executor runs file "
     "sizes below 1 TiB)"),
    ("mseal_test.c test_seal_discard_ro_anon_on_pkey", "needs an allocated pkey and PKRU "
     "writes: no PKU on this CPU (the selftest skips too); covered with pkey -1"),
    ("mseal_test.c test_seal_zero_address", "maps at address 0, outside the arena: run at p0 "
     "instead (what it asserts, seal then mprotect refused, does not depend on the address)"),
)  # fmt: skip
"""Cases of the probe run (numbered as the ``probe/`` scenarios, docs/reference/linux.md)
and of the kernel selftest that the op language cannot express (or only in part), and why."""


# ------------------------------------------------------------------ parsing


def parse_checked_trace(
    text: str, source: str | None = None
) -> tuple[tuple[Step, ...], tuple[Check, ...]]:
    """A trace in the scenarios' form: calls (``= result`` optional) and, after
    any call, ``>`` / ``>h`` lines giving the exact layout expected after it.
    ``sealkit replay`` reads scenario traces with it. Raises :class:`ParseError`."""
    return _parse_scenario_trace(text, source or "", "", need_results=False)


def _parse_scenario_trace(
    text: str, origin: str, name: str, *, need_results: bool = True
) -> tuple[tuple[Step, ...], tuple[Check, ...]]:
    steps: list[Step] = []
    checks: list[Check] = []
    pending: dict[str, list[str]] = {}
    pending_step = -1
    where = f"{name}: " if name else ""

    def flush() -> None:
        nonlocal pending
        for zone, lines in pending.items():
            if pending_step < 0:
                raise ParseError(f"{where}a layout before any call", None, origin or None)
            try:
                layout = Layout.parse("\n".join(lines), zone, 0, 10**6)
            except ParseError as exc:
                raise ParseError(f"{where}{exc.message}", first_line, origin or None) from None
            checks.append(Check(pending_step, zone, layout))
        pending = {}

    first_line: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(">"):
            zone = "h" if line.startswith(">h") else "p"
            body = line[2:] if zone == "h" else line[1:]
            if not pending:
                first_line = number
            pending.setdefault(zone, []).append(body.strip())
            continue
        if pending:
            flush()
        try:
            step = parse_step(line, line=number)
        except ParseError as exc:
            raise ParseError(f"{where}{exc.message}", exc.line, origin or None) from None
        if step is None:
            continue
        if step.result is None and need_results:
            raise ParseError(f"{where}every call needs its '= result'", number, origin or None)
        steps.append(step)
        pending_step = len(steps) - 1
    if pending:
        flush()
    return tuple(steps), tuple(checks)


def _scenario_from_table(table: dict[str, Any], origin: str) -> Scenario:
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise ParseError("a scenario needs a name", None, origin)
    source = table.get("source")
    if not isinstance(source, str) or not source:
        raise ParseError(f"{name}: a scenario must name its source", None, origin)
    trace = table.get("trace")
    if not isinstance(trace, str):
        raise ParseError(f"{name}: a scenario needs a trace", None, origin)
    window = Window(int(table.get("window", 16)), int(table.get("heap", 16)))
    steps, checks = _parse_scenario_trace(trace, origin, name)
    if not checks:
        raise ParseError(f"{name}: a scenario needs at least one '>' layout", None, origin)
    checks = _clip_checks(checks, window, name, origin)
    policies: dict[str, PolicyExpectation] = {}
    for policy, spec in (table.get("policy") or {}).items():
        policies[policy] = _policy_from_table(spec, steps, window, name, policy, origin)
    return Scenario(
        name, source, steps, checks, window, str(table.get("note", "")), policies, origin
    )


def _clip_checks(
    checks: Sequence[Check], window: Window, name: str, origin: str
) -> tuple[Check, ...]:
    out = []
    for check in checks:
        hi = window.pages if check.zone == "p" else window.heap_pages
        runs = check.layout.runs
        if runs and runs[-1].end > hi:
            raise ParseError(f"{name}: layout run ends past the window ({hi} pages)", None, origin)
        out.append(Check(check.step, check.zone, Layout(check.zone, 0, hi, runs)))
    return tuple(out)


def _policy_from_table(
    spec: dict[str, Any], steps: Sequence[Step], window: Window, name: str, policy: str,
    origin: str,
) -> PolicyExpectation:  # fmt: skip
    where = f"{name} [{policy}]"
    if "trace" in spec:
        psteps, own_checks = _parse_scenario_trace(str(spec["trace"]), origin, where)
        return PolicyExpectation(psteps, _clip_checks(own_checks, window, where, origin))
    results = spec.get("results")
    if not isinstance(results, list) or len(results) != len(steps):
        raise ParseError(f"{where}: 'results' must list one result per call", None, origin)
    ops = translate([s.op for s in steps], policy)
    psteps_list = []
    for op, text in zip(ops, results, strict=True):
        try:
            step = parse_step(f"{_op_text(op)} = {text}")
        except ParseError as exc:
            raise ParseError(f"{where}: {exc.message}", None, origin) from None
        assert step is not None
        psteps_list.append(step)
    pchecks: tuple[Check, ...] = ()
    if "layout" in spec:
        lay = Layout.parse(str(spec["layout"]), "p", 0, window.pages)
        pchecks = (Check(len(steps) - 1, "p", lay),)
    return PolicyExpectation(tuple(psteps_list), pchecks)


def _op_text(op: Op) -> str:
    return format_op(op)


def load_scenarios(pattern: str | None = None) -> list[Scenario]:
    """Every scenario (TOML files and the generated madvise matrix), optionally
    only those whose name matches the glob ``pattern``."""
    from .matrix import matrix_scenarios  # noqa: PLC0415 (matrix imports this module)

    found: list[Scenario] = []
    folder = resources.files(__package__).joinpath("scenarios")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        origin = f"fidelity/conformance/scenarios/{entry.name}"
        try:
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ParseError(str(exc), None, origin) from None
        for table in data.get("scenario", []):
            found.append(_scenario_from_table(table, origin))
    found += matrix_scenarios()
    names = [s.name for s in found]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ParseError(f"duplicate scenario names: {', '.join(sorted(dupes))}")
    if pattern:
        found = [s for s in found if fnmatch.fnmatchcase(s.name, pattern)]
    return found


# ------------------------------------------------------------------ policies


def translate(ops: Sequence[Op], policy: str) -> list[Op]:
    """The trace with Linux's ``mseal`` replaced by ``policy``'s own sealing
    call (the strongest seal it offers: every type), so one scenario can be
    asked of every design. Other calls are unchanged, except that a policy
    whose mappings must opt in (``proposal-v3``'s ``MAP_SEALABLE``, RFC v3
    09/11) gets the flag on every mapping. The call comes from the policy
    (``Policy.seal_op``), so every reading of a design is asked the same."""
    from ...model import POLICIES  # noqa: PLC0415 (the model is loaded when used)

    model = POLICIES.get(policy)
    call = model.seal_op if model is not None else Mseal
    sealable = model is not None and model.map_sealable
    out: list[Op] = []
    for op in ops:
        new: Op = op
        if isinstance(op, Mseal):
            if call is MsealV1:
                new = MsealV1(op.addr, op.length, SealV1(0x1F), op.flags)
            elif call is MsealV3:
                new = MsealV3(op.addr, op.length, SealV3(0xF), op.flags)
            elif call is Mimmutable:
                new = Mimmutable(op.addr, op.length)
            elif call is MsealSplit:
                new = MsealSplit(op.addr, op.length, SplitSeal.UNMAP | SplitSeal.PROT)
        elif isinstance(op, Mmap) and sealable:
            new = Mmap(op.addr, op.length, op.prot, op.flags | MapFlag.SEALABLE, op.file,
                       op.offset, op.file_ro)  # fmt: skip
        out.append(new)
    return out


# ------------------------------------------------------------------ matching


def _run_marks(run: Run) -> tuple[Any, ...]:
    return (run.start, run.end, run.prot, run.shared, run.backing)


def _seal_matches(expected: str, actual: str) -> bool:
    if expected == "sl":
        return bool(actual)
    return expected == actual


def _run_matches(expected: Run, actual: Run, *, flags: bool) -> bool:
    if _run_marks(expected) != _run_marks(actual):
        return False
    if not _seal_matches(expected.seal, actual.seal):
        return False
    if flags and expected.flags != actual.flags:
        return False
    if expected.pgoff is not None and expected.pgoff != actual.pgoff:
        return False
    if expected.content:
        if len(expected.content) != len(actual.content or ""):
            return False
        for e, a in zip(expected.content, actual.content, strict=True):
            if e != a and "?" not in (e, a):
                return False
    return True


def _shown(expected: Run, actual: Run) -> str:
    """``actual`` printed with only the fields ``expected`` compares."""
    pgoff = actual.pgoff if expected.pgoff is not None else None
    content = actual.content if expected.content else ""
    return Run(actual.start, actual.end, actual.prot, actual.shared, actual.backing, pgoff,
               None, actual.seal, actual.flags, content).text()  # fmt: skip


def match_layout(expected: Layout, actual: Layout, *, flags: bool = True) -> str | None:
    """``None`` when ``actual`` has exactly the expected VMAs (exact form);
    otherwise the first differing line, ``- expected`` / ``+ actual``."""
    exp, act = expected.runs, actual.runs
    for e, a in zip(exp, act, strict=False):
        if not _run_matches(e, a, flags=flags):
            return f"- {e.text()}\n+ {_shown(e, a)}"
    if len(exp) > len(act):
        return f"- {exp[len(act)].text()}\n+ (nothing more mapped)"
    if len(act) > len(exp):
        return f"- (nothing more mapped)\n+ {act[len(exp)].text()}"
    return None


# ------------------------------------------------------------------ running


@dataclass(frozen=True, slots=True)
class Outcome:
    """A scenario on one target: ``passed``, or the first difference."""

    scenario: str
    target: str
    passed: bool
    diff: str = ""
    key_result: str = ""
    expected: bool = True
    """Whether the scenario has expectations for this target (``False``: only run)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "target": self.target,
            "status": "pass" if self.passed else ("fail" if self.expected else "n/a"),
            "diff": self.diff,
            "key_result": self.key_result,
        }


def _compare(
    steps: Sequence[Step], checks: Sequence[Check], results: Sequence[int],
    layout_at: Callable[[int, str], Layout], *, flags: bool,
) -> str:  # fmt: skip
    for i, step in enumerate(steps):
        if i >= len(results):
            return f"step {i + 1}: did not run"
        if step.result != results[i]:
            assert step.result is not None
            return (
                f"step {i + 1} ({_op_text(step.op).strip()}): expected "
                f"{format_result(step.op, step.result)}, got {format_result(step.op, results[i])}"
            )
    for check in checks:
        actual = layout_at(check.step, check.zone)
        diff = match_layout(check.layout, actual, flags=flags)
        if diff:
            return f"after step {check.step + 1} ({check.zone}):\n{diff}"
    return ""


def _expectations(sc: Scenario, policy: str) -> tuple[tuple[Step, ...], tuple[Check, ...], bool]:
    """The steps and checks ``policy`` is held to, and whether it is judged:
    the Linux trace for ``linux``; for another policy its own expectations
    when the scenario has them, else the translated trace (shown, not judged)."""
    if policy == "linux":
        return sc.steps, sc.checks, True
    if policy in sc.policies:
        exp = sc.policies[policy]
        return exp.steps, exp.checks, True
    return tuple(Step(op, 0) for op in translate(sc.ops, policy)), (), False


def run_scenarios(scenarios: Iterable[Scenario], target: str | Target = "kernel") -> list[Outcome]:
    """Run the scenarios on ``target`` (a name such as ``"kernel"`` or
    ``"model:mimmutable"``, or a :class:`~sealkit.fidelity.target.Target`
    to reuse for the scenarios of its window)."""
    out: list[Outcome] = []
    given = None if isinstance(target, str) else target
    name = target if isinstance(target, str) else target.name
    by_window: dict[Window, Target] = {}
    try:
        for sc in scenarios:
            tx = given
            if tx is None or tx.window != sc.window:
                tx = by_window.get(sc.window)
                if tx is None:
                    tx = by_window[sc.window] = make_target(name, sc.window)
            steps, checks, judged = _expectations(sc, tx.policy)
            steps_with_checks = {c.step for c in checks}
            if tx.name == "kernel":
                # What this caller may not do (lock memory without CAP_IPC_LOCK)
                # is not a difference from the model: not run, and why.
                why = next((r for r in map(host_refusal, (s.op for s in steps)) if r), None)
                if why:
                    note = f"not run here: {why}"
                    out.append(Outcome(sc.name, tx.name, False, note, note, expected=False))
                    continue
            try:
                run = tx.run(
                    [s.op for s in steps], layouts=steps_with_checks, flags=steps_with_checks
                )
            except OutsideArenaError as exc:
                out.append(Outcome(sc.name, tx.name, False, f"refused by the executor: {exc}"))
                continue
            if run.died:
                out.append(Outcome(sc.name, tx.name, False, f"{tx.name} run died: {run.died}"))
                continue
            key = sc.key_step if len(steps) == len(sc.steps) else len(steps) - 1
            key_text = (
                format_result(steps[key].op, run.results[key])
                if steps and key < len(run.results)
                else ""
            )
            if not judged:
                out.append(Outcome(sc.name, tx.name, True, "", key_text, expected=False))
                continue
            diff = _compare(steps, checks, run.results, run.layout, flags=True)
            out.append(Outcome(sc.name, tx.name, not diff, diff, key_text))
    finally:
        for tx in by_window.values():
            tx.close()
    return out
