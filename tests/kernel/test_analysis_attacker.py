"""``sealkit analyze --attacker ... --replay``: the kernel confirms what no seal covers (issue 14).

The commands of docs/analyze.md, at depth 1 (the findings are one call long).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from sealkit.analysis.attackers import NO_SEAL
from sealkit.fidelity.executor.refusals import proc_mem_force

pytestmark = pytest.mark.kernel

ALWAYS = proc_mem_force()[0] == "always"


def _content(cli: Callable[..., subprocess.CompletedProcess[str]], attacker: str) -> dict:  # type: ignore[type-arg]
    proc = cli(
        "analyze", "--policy", "linux", "--property", "content", "--depth", "1",
        "--attacker", attacker, "--replay", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cell: dict = json.loads(proc.stdout)["policies"][0]["verdicts"]["content"]  # type: ignore[type-arg]
    return cell


@pytest.mark.skipif(not ALWAYS, reason="pwrite_mem runs only under proc_mem.force_override=always")
def test_procmem_one_call_overwrite_of_a_sealed_read_only_page_is_confirmed(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    cell = _content(sealkit_cli, "+procmem")
    assert cell["length"] == 1 and cell["attack"].startswith("pwrite_mem ")
    assert cell["replay"]["status"] == "confirmed", cell["replay"]
    # What the kernel itself showed: the sealed r-- anonymous page p1 holds
    # the attacker's data, and it is still sealed and read-only.
    assert "p1: b -> z" in cell["replay"]["detail"]
    assert "[1,3) r--p,sl anon" in cell["replay"]["after"]
    assert cell["needed"] == NO_SEAL["pwrite_mem"]


def test_ptrace_poke_of_a_sealed_read_only_page_is_confirmed(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    cell = _content(sealkit_cli, "+ptrace")
    assert cell["attack"].startswith("poke ")
    assert cell["replay"]["status"] == "confirmed", cell["replay"]
    assert "overwritten" in cell["replay"]["detail"]


def test_file_write_reaches_a_sealed_private_mappings_uncopied_page(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    cell = _content(sealkit_cli, "+file-write")
    assert cell["attack"].startswith("file_pwrite f2 ")
    assert cell["replay"]["status"] == "confirmed", cell["replay"]
    assert "p9: F -> z" in cell["replay"]["detail"]
    assert "[9,11) r-xp,sl file:f2@0 zF" in cell["replay"]["after"]


@pytest.mark.skipif(not ALWAYS, reason="pwrite_mem runs only under proc_mem.force_override=always")
def test_every_linux_row_of_what_no_seal_covers_is_confirmed() -> None:
    # docs/debate.md "What no seal covers", row `linux`: every attack there
    # (and the syscalls ones of the same length) replayed on this kernel.
    from sealkit.analysis import DEFAULT_SCENARIO, Property, analyze, parse_policy
    from sealkit.analysis.alphabet import parse_attacker
    from sealkit.analysis.replay import replay_counterexample

    spec = parse_policy("linux")
    report = analyze(
        [spec], [Property.CONTENT], 1, workers=1,
        attacker=parse_attacker(["+procmem,+ptrace,+file-write"]),
    )  # fmt: skip
    verdict = report.policies[0].verdicts[Property.CONTENT]
    found = [c for c in (verdict.counterexample, *verdict.others) if c is not None]
    names = {c.attack[-1].op.NAME for c in found}
    assert {"pwrite_mem", "poke", "file_pwrite", "punch", "ftruncate"} <= names
    for c in found:
        outcome = replay_counterexample(c, DEFAULT_SCENARIO, spec)
        assert outcome.status == "confirmed", (c.attack_text(), outcome.detail)
