"""After Pages.seal(), every call that sealing blocks raises SealedError (a
PermissionError) and the content is unchanged, read back after the attempt
(docs/reference/linux.md rules 5-8 and 10). Each case runs in a forked child."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from sealkit import Pages, SealedError, is_sealed, sealed_ranges
from sealkit._os import syscalls as sc
from sealkit.flags import Madv, MapFlag, MremapFlag, Prot

pytestmark = pytest.mark.kernel

PAGE = 4096
N = 4
PATTERN = b"".join(bytes([0x61 + i]) * PAGE for i in range(N))  # "abcd", one letter a page
RW = int(Prot.READ | Prot.WRITE)
ANON = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)
FIXED = int(MapFlag.FIXED)
MAYMOVE = int(MremapFlag.MAYMOVE)


def _elsewhere(pages: int) -> int:
    """A free destination: map and unmap, so the range is known to be free."""
    addr = sc.mmap(0, pages * PAGE, 0, ANON)
    sc.munmap(addr, pages * PAGE)
    return addr


ATTACKS: dict[str, Callable[[int], object]] = {
    "mprotect same prot": lambda a: sc.mprotect(a, N * PAGE, RW),
    "mprotect fewer rights": lambda a: sc.mprotect(a, N * PAGE, int(Prot.READ)),
    "mprotect more rights": lambda a: sc.mprotect(a, N * PAGE, RW | int(Prot.EXEC)),
    "mprotect sub-range": lambda a: sc.mprotect(a + PAGE, PAGE, 0),
    "pkey_mprotect": lambda a: sc.pkey_mprotect(a, N * PAGE, int(Prot.READ), -1),
    "munmap whole": lambda a: sc.munmap(a, N * PAGE),
    "munmap one page": lambda a: sc.munmap(a + 2 * PAGE, PAGE),
    "mremap shrink": lambda a: sc.mremap(a, N * PAGE, PAGE),
    "mremap grow in place": lambda a: sc.mremap(a, N * PAGE, 2 * N * PAGE),
    "mremap grow maymove": lambda a: sc.mremap(a, N * PAGE, 64 * N * PAGE, MAYMOVE),
    "mremap move": lambda a: sc.mremap(
        a, N * PAGE, N * PAGE, MAYMOVE | int(MremapFlag.FIXED), _elsewhere(N)
    ),
    "mremap same size": lambda a: sc.mremap(a, N * PAGE, N * PAGE),
    "mmap MAP_FIXED over": lambda a: sc.mmap(a, N * PAGE, RW, ANON | FIXED),
    "mmap MAP_FIXED over one page": lambda a: sc.mmap(a + PAGE, PAGE, 0, ANON | FIXED),
}


def _attack_sealed(prot: str, attack: str) -> dict[str, object]:
    pages = Pages(N * PAGE)
    pages.write(PATTERN)
    pages.protect(prot)
    pages.seal()
    addr = pages.address
    outcome: dict[str, object] = {"raised": None}
    try:
        ATTACKS[attack](addr)
    except SealedError as exc:
        outcome.update(
            raised="SealedError",
            errno=exc.errno,
            permission=isinstance(exc, PermissionError),
            call=exc.call,
        )
    outcome["content_intact"] = pages.read() == PATTERN
    outcome["still_sealed"] = is_sealed(addr, N * PAGE)
    vmas = [v for v in sealed_ranges() if v.start < addr + N * PAGE and v.end > addr]
    outcome["perms"] = sorted({v.perms for v in vmas})
    return outcome


@pytest.mark.parametrize("prot", ["rw", "r"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_blocked_call_raises_sealed_error_and_content_survives(
    in_child: Callable[..., Any], prot: str, attack: str
) -> None:
    outcome = in_child(_attack_sealed, prot, attack)
    assert outcome["raised"] == "SealedError", outcome
    assert outcome["errno"] == errno.EPERM and outcome["permission"] is True
    assert outcome["content_intact"] is True
    assert outcome["still_sealed"] is True
    assert outcome["perms"] == [("rw-p" if prot == "rw" else "r--p")]


def _madvise_sealed(prot: str, advice: int) -> tuple[str | None, bytes]:
    pages = Pages(N * PAGE)
    pages.write(PATTERN)
    pages.protect(prot)
    pages.seal()
    raised = None
    try:
        sc.madvise(pages.address, N * PAGE, advice)
    except SealedError as exc:
        raised = f"{type(exc).__name__}:{exc.errno}:{isinstance(exc, PermissionError)}"
    return raised, pages.read()


@pytest.mark.parametrize(
    "advice", [Madv.DONTNEED, Madv.DONTNEED_LOCKED, Madv.FREE, Madv.WIPEONFORK, Madv.REMOVE]
)
def test_discard_advice_on_readonly_sealed_is_refused(
    in_child: Callable[..., Any], advice: Madv
) -> None:
    raised, content = in_child(_madvise_sealed, "r", int(advice))
    assert raised == f"SealedError:{errno.EPERM}:True"
    assert content == PATTERN


def test_dontneed_on_writable_sealed_memory_still_zeroes(in_child: Callable[..., Any]) -> None:
    """The limit of sealing (docs/reference/linux.md rule 11): anonymous RW memory
    can still be discarded. Documented, so callers freeze() secrets read-only."""
    raised, content = in_child(_madvise_sealed, "rw", int(Madv.DONTNEED))
    assert raised is None
    assert content == bytes(N * PAGE)
