"""Never seal a half-loaded object: live sealing waits while the target's
dynamic loader is mid-change (r_state, glibc's loader lock), and neither
live sealing nor harden() seals an object with text relocations."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import pytest

from sealkit._os import procfs
from sealkit.errors import TargetRefusedError
from sealkit.sealing.live import seal_process
from sealkit.sealing.live.target import Loader, Process
from tests.live_support import CTargets, Spawn, wait_until

pytestmark = pytest.mark.kernel


def sealed_ranges(pid: int) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in procfs.read_smaps(pid, counters=False) if v.sealed]


def test_loader_mid_change_means_busy_and_nothing_sealed(c_targets: CTargets, spawn: Spawn) -> None:
    """r_state set to RT_ADD in the target (as the loader does while it maps
    an object): sealkit retries until the timeout and seals nothing; with
    RT_CONSISTENT back, it seals."""
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    with Process(target.pid) as process:
        loader = Loader(process)
        assert loader.locate(process.vmas(smaps=False)) == ""
        state_at = loader.rdebug + 24  # r_debug.r_state
    with open(f"/proc/{target.pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(state_at)
        mem.write((1).to_bytes(4, "little"))
        started = time.monotonic()
        with pytest.raises(TargetRefusedError) as info:
            seal_process(target.pid, timeout=0.3)
        assert info.value.reason == "busy" and "RT_ADD" in str(info.value)
        assert 0.25 < time.monotonic() - started < 3
        assert sealed_ranges(target.pid) == []
        mem.seek(state_at)
        mem.write((0).to_bytes(4, "little"))
    assert seal_process(target.pid).ok
    assert target.let_go()


def test_a_thread_inside_dlopen_outside_the_loader_means_busy(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """A thread sits in the constructor of the library it is dlopening: the
    loader's list is RT_CONSISTENT and no thread runs the loader's code, yet
    dlopen is not over (glibc holds its loader lock, _dl_load_lock, until it
    returns). sealkit sees the lock's owner, seals nothing while it is held,
    and seals the library once dlopen has returned."""
    lib = c_targets["libslowctor"]
    target = spawn([c_targets["dlopener"], lib], stdin=True, env={"SLOW_CTOR_SECONDS": "1.2"})
    target.send(b"open\n")
    assert target.readline(5) == b"in-ctor\n"
    with Process(target.pid) as process:  # the gap the lock closes: everything else looks idle
        loader = Loader(process)
        assert loader.locate(process.vmas(smaps=False)) == ""
        namespaces, nodes = loader.walk()
        assert [ns.state for ns in namespaces] == [0]  # RT_CONSISTENT
        smaps = process.vmas(smaps=True)
        lock = loader.load_lock(nodes, smaps)
        assert lock.addr and lock.note.startswith("checked")
    loader_thread = max(int(t.name) for t in Path(f"/proc/{target.pid}/task").iterdir())
    with pytest.raises(TargetRefusedError) as info:
        seal_process(target.pid, timeout=0.3)
    assert info.value.reason == "busy"
    assert "inside dlopen or dlclose (glibc's loader lock is held)" in str(info.value)
    assert f"thread {loader_thread}" in str(info.value)
    assert sealed_ranges(target.pid) == []
    assert target.readline(5) == b"loaded\n"
    report = seal_process(target.pid)
    assert report.ok and report.retries == ()
    slow = [o for o in report.objects if o.path.endswith("libslowctor.so")]
    assert slow and {"text", "relro"} <= {r.kind for r in slow[0].sealed}
    code, out, _ = target.finish(input=b"")
    assert (code, out.strip()) == (0, "ok")


def test_live_sealing_waits_for_the_lock_and_then_seals(c_targets: CTargets, spawn: Spawn) -> None:
    """The same, with a timeout longer than the constructor: sealkit retries
    while the lock is held and succeeds once it is free."""
    lib = c_targets["libslowctor"]
    target = spawn([c_targets["dlopener"], lib], stdin=True, env={"SLOW_CTOR_SECONDS": "0.4"})
    target.send(b"open\n")
    assert target.readline(5) == b"in-ctor\n"
    report = seal_process(target.pid, timeout=10)
    assert report.ok and report.verified
    assert any("loader lock is held" in r for r in report.retries), report.retries
    assert any(o.path.endswith("libslowctor.so") and o.sealed for o in report.objects)
    assert target.readline(5) == b"loaded\n"


def test_an_object_with_text_relocations_is_never_sealed_live(
    c_targets: CTargets, spawn: Spawn
) -> None:
    target = spawn([c_targets["dlopener"], c_targets["libtextrel"]], stdin=True)
    target.send(b"open\n")
    assert target.readline(5) == b"loaded\n"
    report = seal_process(target.pid)
    assert report.ok
    [obj] = [o for o in report.objects if o.path.endswith("libtextrel.so")]
    assert obj.sealed == () and "DT_TEXTREL" in obj.skipped[0].reason
    mapped = [v for v in procfs.read_smaps(target.pid) if v.path.endswith("libtextrel.so")]
    assert mapped and not any(v.sealed for v in mapped)
    assert any(o.path.endswith("libc.so.6") and o.sealed for o in report.objects)


def _harden_with_textrel(path: str) -> tuple[list[str], bool, bool]:
    import sealkit

    lib = ctypes.CDLL(path)
    assert lib.textrel_get() == 42  # the loader relocated its text
    report = sealkit.harden()
    [obj] = report.find("libtextrel.so")
    sealed = [v for v in procfs.read_smaps(counters=False) if v.sealed]
    lib_sealed = any(v.path.endswith("libtextrel.so") for v in sealed)
    libc_sealed = any(v.path.endswith("libc.so.6") for v in sealed)
    return [r.reason for r in obj.skipped if not obj.sealed], lib_sealed, libc_sealed


def test_harden_never_seals_an_object_with_text_relocations(
    c_targets: CTargets, in_child: object
) -> None:
    """The rule lives in the shared planner: harden() follows it too."""
    reasons, lib_sealed, libc_sealed = in_child(_harden_with_textrel, c_targets["libtextrel"])  # type: ignore[operator]
    assert reasons and "DT_TEXTREL" in reasons[0]
    assert not lib_sealed and libc_sealed


def test_textrel_is_read_from_the_loaded_objects(c_targets: CTargets, in_child: object) -> None:
    def flags(path: str) -> tuple[bool, bool]:
        from sealkit._os import syscalls

        ctypes.CDLL(path)
        objects = syscalls.loaded_objects()
        textrel = [o for o in objects if o.name.endswith("libtextrel.so")]
        return textrel[0].textrel, any(o.textrel for o in objects if o not in textrel)

    assert in_child(flags, c_targets["libtextrel"]) == (True, False)  # type: ignore[operator]


def test_wait_until_is_bounded() -> None:  # the helper the tests lean on
    started = time.monotonic()
    assert not wait_until(lambda: False, 0.05)
    assert time.monotonic() - started < 1
