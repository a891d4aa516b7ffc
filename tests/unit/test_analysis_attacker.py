"""``sealkit analyze --attacker``: profiles beyond the process's own calls (issue 14).

On the model: what each profile adds to the alphabet (and that ``syscalls``
adds nothing), that the added calls stay in their frames (the search's
reductions rest on it), and the findings the issue asks for, at depth 1.
The kernel confirms them in tests/kernel/test_analysis_attacker.py.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable

import pytest

from sealkit.analysis import DEBATE_POLICIES, Property, analyze, analyze_policy, parse_policy
from sealkit.analysis.alphabet import DEFAULT_ATTACKER, EFFECTS, parse_attacker
from sealkit.analysis.analyzer import make_problem
from sealkit.analysis.attackers import NO_SEAL, attacker_text
from sealkit.analysis.properties import page_facts
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.errors import ArgumentError
from sealkit.ops import attacker_of, format_op

ALL = parse_attacker(["+procmem,+ptrace", "+file-write"])
WINDOWS = (("p", -1, DEFAULT_SCENARIO.pages + 1), ("h", -1, DEFAULT_SCENARIO.heap_pages + 1))


def test_parse_attacker_profiles() -> None:
    assert parse_attacker(None) == DEFAULT_ATTACKER == frozenset({"syscalls"})
    assert parse_attacker(["syscalls"]) == DEFAULT_ATTACKER
    assert parse_attacker(["+procmem"]) == {"syscalls", "procmem"}
    both = {"syscalls", "procmem", "file-write"}
    assert parse_attacker(["+procmem,+file-write"]) == both
    assert parse_attacker(["+procmem", "+file-write"]) == both
    assert parse_attacker([" syscalls , +ptrace "]) == {"syscalls", "ptrace"}
    assert {"syscalls", "procmem", "ptrace", "file-write"} == ALL
    assert attacker_text(ALL) == "syscalls,+procmem,+ptrace,+file-write"
    assert attacker_text(DEFAULT_ATTACKER) == "syscalls"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("procmem", "unknown attacker 'procmem' (did you mean +procmem?)"),
        ("+root", "unknown attacker '+root'"),
        ("+syscalls", "unknown attacker '+syscalls'"),
        ("+procmem,", "unknown attacker ''"),
    ],
)
def test_parse_attacker_refuses_bad_values_in_one_line(value: str, message: str) -> None:
    with pytest.raises(ArgumentError) as info:
        parse_attacker([value])
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text
    assert "known: syscalls, +procmem, +ptrace, +file-write" in text


def test_syscalls_profile_is_todays_alphabet() -> None:
    spec = parse_policy("linux")
    default, _ = make_problem(DEFAULT_SCENARIO, spec)
    explicit, _ = make_problem(DEFAULT_SCENARIO, spec, attacker=parse_attacker(["syscalls"]))
    assert default.alphabet == explicit.alphabet
    assert {attacker_of(op) for op in default.alphabet.ops} == {"syscalls"}
    widest, _ = make_problem(DEFAULT_SCENARIO, spec, attacker=ALL)
    # A profile only adds its own calls; the syscalls part keeps its order.
    kept = [op for op in widest.alphabet.ops if attacker_of(op) == "syscalls"]
    assert kept == list(default.alphabet.ops)
    added = widest.alphabet.counts()
    for name in ("pwrite_mem", "vm_writev", "poke", "file_pwrite", "punch", "ftruncate"):
        assert added[name] > 0, name
        assert name not in default.alphabet.counts()
    for name in ("msync", "mincore", "mlockall", "munlockall"):
        assert name not in added  # in no profile: they change no property


def test_each_profile_adds_only_its_capability() -> None:
    spec = parse_policy("linux")
    for capability in ("procmem", "ptrace", "file-write"):
        problem, _ = make_problem(
            DEFAULT_SCENARIO, spec, attacker=parse_attacker([f"+{capability}"])
        )
        assert {attacker_of(op) for op in problem.alphabet.ops} == {"syscalls", capability}


def test_profile_calls_are_local_and_stay_in_their_frames() -> None:
    # As tests/unit/test_analysis_frames.py for the syscalls alphabet: a
    # writer changes only the pages it names and their aliases; a file call
    # (no address: applied in every state by the search) changes page data only.
    rng = random.Random("frames attacker")
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy("linux"), attacker=ALL)
    ops = [i for i, op in enumerate(problem.alphabet.ops) if attacker_of(op) != "syscalls"]
    states = [problem.start]
    for _ in range(5):
        s = rng.choice(states).copy()
        s.apply(rng.choice(problem.alphabet.ops))
        states.append(s)
    checked = 0
    for state in states:
        before = page_facts([state.layout(z, lo, hi) for z, lo, hi in WINDOWS])
        for i in rng.sample(ops, 40):
            op, named = problem.alphabet.ops[i], problem.alphabet.windows[i]
            assert EFFECTS[op.NAME] == {Property.CONTENT}
            twin = state.copy()
            twin.apply(op)
            after = page_facts([twin.layout(z, lo, hi) for z, lo, hi in WINDOWS])
            assert set(before) == set(after), format_op(op)
            for page, a in before.items():
                b = after[page]
                assert a.identity() == b.identity() and a.prot == b.prot, (format_op(op), page)
                if (
                    named is not None
                    and page not in named
                    and not (a.shared or a.backing != "anon")
                ):
                    assert a.token == b.token, (format_op(op), page)
            checked += 1
    assert checked == 6 * 40


def _content(attacker: str, policy: str = "linux") -> object:
    report = analyze_policy(
        parse_policy(policy), [Property.CONTENT], depth=1, attacker=parse_attacker([attacker])
    )
    return report.verdicts[Property.CONTENT]


def test_procmem_overwrites_a_sealed_read_only_page_in_one_call() -> None:
    verdict = _content("+procmem")
    c = verdict.counterexample  # type: ignore[attr-defined]
    assert c is not None and c.length == 1
    [step] = c.attack
    assert step.op.NAME == "pwrite_mem" and step.result == step.op.length
    assert "overwritten" in c.violation.kinds
    # The page was sealed and read-only before and still is: the seal held,
    # the data did not.
    page = int(c.violation.summary().rsplit("at p", 1)[1].split(",")[0])
    run = c.before.run_at(page)
    assert run is not None and run.seal == "sl" and "w" not in run.perms
    assert c.after.run_at(page).seal == "sl"
    assert c.needed() == NO_SEAL["pwrite_mem"] and c.needed().startswith("no seal in any design")
    assert "proc_mem.force_override=never" in c.needed()


def test_ptrace_pokes_a_sealed_read_only_page_in_one_call() -> None:
    c = _content("+ptrace").counterexample  # type: ignore[attr-defined]
    assert c is not None and [s.op.NAME for s in c.attack] == ["poke"]
    assert "overwritten" in c.violation.kinds and c.needed() == NO_SEAL["poke"]


def test_file_write_changes_a_sealed_private_file_mappings_uncopied_page() -> None:
    c = _content("+file-write").counterexample  # type: ignore[attr-defined]
    assert c is not None and c.length == 1
    [step] = c.attack
    assert step.op.NAME == "file_pwrite" and step.op.file == "f2"
    # p9 maps f2 privately from a read-only descriptor, sealed, never written:
    # its page is still the page cache's, so the file's new data shows.
    run = c.before.run_at(9)
    assert run is not None and run.backing == "file:f2" and not run.shared and run.seal == "sl"
    assert c.violation.summary().endswith("at p9")
    assert c.before.render_content()[9] == "F" and c.after.render_content()[9] == "z"
    # f1's pages were copied by a write before sealing: a write to the file
    # does not reach them (the counterexample never names f1 for a write).
    assert all(
        o.attack[0].op.NAME != "file_pwrite" or o.attack[0].op.file != "f1"
        for o in _content("+file-write").others  # type: ignore[attr-defined]
    )
    assert c.needed() == NO_SEAL["file_pwrite"]


@pytest.mark.parametrize("policy", DEBATE_POLICIES)
def test_no_design_refuses_a_forced_write_or_a_file_write(policy: str) -> None:
    report = analyze(
        [parse_policy(policy)], [Property.CONTENT], depth=1, workers=1, attacker=ALL
    ).policies[0]
    verdict = report.verdicts[Property.CONTENT]
    ends = {c.attack[-1].op.NAME for c in (verdict.counterexample, *verdict.others) if c}
    assert {"pwrite_mem", "poke", "file_pwrite", "punch", "ftruncate"} <= ends, ends
    assert "vm_writev" not in ends  # unforced: it honours the read-only protection


def test_syscalls_findings_and_table_are_unchanged_by_the_option(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    args = ("analyze", "--policy", "linux", "--policy", "none", "--depth", "1", "--json")
    plain = sealkit_cli(*args, "--workers", "1")
    explicit = sealkit_cli(*args, "--workers", "1", "--attacker", "syscalls")
    assert plain.returncode == explicit.returncode == 0, explicit.stderr
    a, b = json.loads(plain.stdout), json.loads(explicit.stdout)
    assert a["attacker"] == b["attacker"] == "syscalls"
    for pa, pb in zip(a["policies"], b["policies"], strict=True):
        assert pa["alphabet"] == pb["alphabet"]
        assert pa["search"]["states"] == pb["search"]["states"]
        for prop in pa["verdicts"]:
            va, vb = pa["verdicts"][prop], pb["verdicts"][prop]
            assert va == vb


def test_cli_refuses_a_bad_attacker_in_one_line(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    proc = sealkit_cli("analyze", "--attacker", "+procmem,+kernel")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("sealkit analyze: unknown attacker '+kernel'")


def test_cli_shows_what_would_stop_it(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    proc = sealkit_cli(
        "analyze", "--policy", "linux", "--property", "content", "--depth", "1",
        "--attacker", "+procmem", "--attacker", "+file-write", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["attacker"] == "syscalls,+procmem,+file-write"
    cell = out["policies"][0]["verdicts"]["content"]
    assert cell["attack"].startswith("pwrite_mem ")
    assert cell["needed"] == NO_SEAL["pwrite_mem"]
    assert out["policies"][0]["alphabet"]["file_pwrite"] > 0


def test_cli_says_when_holds_is_not_exact_with_file_write(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    args = ("analyze", "--policy", "none", "--property", "mapping", "--attacker", "+file-write")
    deep = sealkit_cli(*args, "--depth", "2", "--json")
    assert deep.returncode == 0, deep.stderr
    assert "'holds' is exact only with --exact" in deep.stderr
    shallow = sealkit_cli(*args, "--depth", "1", "--json")
    assert shallow.returncode == 0 and shallow.stderr == ""
