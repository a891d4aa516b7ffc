"""The model's caller is root (CAP_IPC_LOCK); without that capability the
kernel holds every call that locks memory to RLIMIT_MEMLOCK counted over the
whole runner, so the executor refuses those calls there instead of reporting
the runner's size as a difference from the model (a non-root `sealkit fuzz`
reported `mlockall current = ENOMEM  # model: 0` as a divergence, and
`sealkit conform` failed 7 scenarios)."""

from __future__ import annotations

import resource

import pytest

from sealkit.fidelity.executor import host_refusal, refusal
from sealkit.fidelity.executor import refusals as refusals_module
from sealkit.fidelity.target import Window
from sealkit.ops import parse_trace

WIN = Window(pages=16, heap_pages=8)
LIMITED = (False, 8 << 20)  # a user's default: no CAP_IPC_LOCK, 8 MiB

LOCKING = [
    "mlockall current",
    "mlockall current|onfault",
    "mlockall future",  # later mappings go through mlock_future_ok()
    "mlock p0 2p",
    "mlock 0xfffffffffffff000 0x10000000000",  # ENOMEM before the range's EINVAL
    "mlock p0 2p onfault",  # mlock2(MLOCK_ONFAULT)
    "mmap p0 2p rw- private|anon|fixed|locked",
]
NOT_LOCKING = [
    "mlockall 0",  # EINVAL before any limit
    "mlockall onfault",  # EINVAL
    "mlockall 0x8",  # EINVAL
    "munlockall",
    "munlock p0 2p",
    "mmap p0 2p rw- private|anon|fixed",
]


def _op(line: str):  # type: ignore[no-untyped-def]
    (step,) = parse_trace(line)
    return step.op


@pytest.mark.parametrize("line", LOCKING)
def test_locking_calls_are_refused_without_cap_ipc_lock(
    line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusals_module, "_memlock", lambda: LIMITED)
    why = host_refusal(_op(line))
    assert why is not None and "CAP_IPC_LOCK" in why and "8192 KiB" in why
    assert "ulimit -l unlimited" in why
    assert refusal(_op(line), WIN, False) == why  # the fuzzer never generates it


@pytest.mark.parametrize("line", NOT_LOCKING)
def test_other_calls_and_invalid_flags_still_run(
    line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusals_module, "_memlock", lambda: LIMITED)
    assert host_refusal(_op(line)) is None
    assert refusal(_op(line), WIN, False) is None


@pytest.mark.parametrize("memlock", [(True, 8 << 20), (False, resource.RLIM_INFINITY)])
def test_with_cap_ipc_lock_or_no_limit_every_locking_call_runs(
    memlock: tuple[bool, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusals_module, "_memlock", lambda: memlock)
    for line in LOCKING:
        assert host_refusal(_op(line)) is None, line
        assert refusal(_op(line), WIN, False) is None, line


def test_memlock_reads_this_process() -> None:
    capable, limit = refusals_module._memlock()
    assert limit == resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    with open("/proc/self/status") as fh:
        eff = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    assert capable == bool(eff & (1 << 14))
