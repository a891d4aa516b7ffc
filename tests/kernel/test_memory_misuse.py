"""Misuse of the safe API that once crashed the interpreter or sealed
memory sealkit did not own (found by an adversarial review). Each case
must end in a typed error, with nothing sealed that the caller does not own.

Anything that seals, or could crash, runs in a forked child (``in_child``)
or a fresh interpreter."""

from __future__ import annotations

import copy
import ctypes
import mmap
import os
import pickle
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from sealkit import CodePages, Pages, SealedFile, StateError, is_sealed, map_file, seal_mmap
from sealkit.errors import ArgumentTypeError, UnsafeTargetError
from tests.conftest import run_python

pytestmark = pytest.mark.kernel

PAGE = mmap.PAGESIZE


class LyingInt(int):
    """An int whose conversions lie about its value."""

    def __int__(self) -> int:
        return 1 << 30

    def __index__(self) -> int:
        return 1 << 31


# --- copies and pickles would share one mapping between two owners -----------------


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, pickle.dumps],
    ids=["copy", "deepcopy", "pickle"],
)
def test_pages_cannot_be_copied_or_pickled(duplicate: Callable[[object], object]) -> None:
    with Pages(PAGE) as p:
        p.write(b"mine")
        with pytest.raises(ArgumentTypeError, match="cannot copy or pickle a Pages"):
            duplicate(p)
        code = CodePages(PAGE)
        with pytest.raises(ArgumentTypeError, match="cannot copy or pickle a CodePages"):
            duplicate(code)
        code.close()
        assert p.read(4) == b"mine"  # the original is untouched


def _copy_sealed_file(path: str) -> list[str]:
    f = map_file(path)
    refused = []
    for duplicate in (copy.copy, copy.deepcopy, pickle.dumps):
        try:
            duplicate(f)
        except ArgumentTypeError:
            refused.append(duplicate.__name__)
    return refused


def test_sealed_file_cannot_be_copied_or_pickled(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    assert in_child(_copy_sealed_file, make_file(b"x" * 100)) == ["copy", "deepcopy", "dumps"]


def test_sealed_file_comes_only_from_map_file() -> None:
    with pytest.raises(ArgumentTypeError, match="map_file"):
        SealedFile("/etc/hostname", 0, 16, 0x10000, PAGE)


# --- objects whose __init__ never ran ---------------------------------------------


def test_uninitialised_objects_raise_state_error() -> None:
    class Lazy(Pages):
        def __init__(self) -> None:  # forgets Pages.__init__
            pass

    class Fine(Pages):
        def __init__(self) -> None:
            super().__init__(PAGE)

    with pytest.raises(StateError, match=r"must call Pages\.__init__"):
        Lazy()
    with Fine() as fine:
        assert len(fine) == PAGE
    with pytest.raises(StateError, match="never initialised"):
        CodePages.__new__(CodePages).seal()
    with pytest.raises(StateError, match="never initialised"):
        SealedFile.__new__(SealedFile).read()
    with pytest.raises(AttributeError):
        CodePages.__new__(CodePages).no_such_attribute  # noqa: B018 - other names stay AttributeError


# --- int subclasses: what is checked is what is used -------------------------------


def _lying_ints(path: str) -> dict[str, object]:
    f = map_file(path)
    code = CodePages.from_code(bytes.fromhex("b82a000000c3"))  # mov eax, 42; ret
    fn = code.function(ctypes.c_int, offset=LyingInt(0))
    with Pages(LyingInt(PAGE)) as p:
        p.write(b"abc", LyingInt(1))
        pages = (len(p), p.read(LyingInt(3), LyingInt(1)))
    return {
        "read": f.read(LyingInt(3), LyingInt(1)),
        "call": fn(),
        "pointer": ctypes.cast(fn, ctypes.c_void_p).value == code.address,
        "pages": pages,
        "is_sealed": is_sealed(LyingInt(code.address), LyingInt(PAGE)),
    }


def test_int_subclasses_are_used_by_their_value(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    out = in_child(_lying_ints, make_file(b"0123456789"))
    assert out == {
        "read": b"123",
        "call": 42,
        "pointer": True,
        "pages": (PAGE, b"abc"),
        "is_sealed": True,
    }


# --- a shared mmap with a file descriptor behind it --------------------------------


def _map_files_alias() -> dict[str, object]:
    m1 = mmap.mmap(-1, 2 * PAGE)  # shared anonymous: no descriptor
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m1))
    try:
        fd = os.open(f"/proc/self/map_files/{addr:x}-{addr + 2 * PAGE:x}", os.O_RDWR)
    except PermissionError:
        return {"skip": "opening /proc/self/map_files needs CAP_SYS_ADMIN"}
    m2 = mmap.mmap(fd, 2 * PAGE)  # the same shmem object, and CPython keeps a dup of fd
    os.close(fd)
    try:
        seal_mmap(m2)
        refused = ""
    except UnsafeTargetError as exc:
        refused = str(exc)
    alias_sealed = is_sealed(m2)
    try:
        m2.resize(PAGE)  # truncates the shmem object: legal, since nothing is sealed
    except OSError:
        pass
    del m2
    return {"refused": refused, "alias_sealed": alias_sealed}


def test_shared_mmap_with_a_descriptor_behind_it_is_refused(
    in_child: Callable[..., Any],
) -> None:
    out = in_child(_map_files_alias)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert "file descriptor" in out["refused"] and "nothing was sealed" in out["refused"]
    assert out["alias_sealed"] is False


def _plain_shared_mmap_still_accepted() -> bool:
    m = mmap.mmap(-1, PAGE)
    seal_mmap(m)
    return is_sealed(m)


def test_plain_shared_anonymous_mmap_is_still_accepted(in_child: Callable[..., Any]) -> None:
    assert in_child(_plain_shared_mmap_still_accepted) is True


# --- finalisation racing a weak reference ------------------------------------------

RESURRECTION_RACE = textwrap.dedent(
    """
    import sys, threading, time, weakref
    from sealkit import Pages, StateError
    sys.setswitchinterval(1e-6)
    P, N = 4096, 256
    survivors = 0
    for _ in range(150):
        p = Pages(P * N)
        for k in range(0, P * N, P):
            p.write(b"a", k)
        ref, stop = weakref.ref(p), False
        def spin():
            global survivors
            while not stop:
                q = ref()
                if q is None:
                    return
                try:
                    q.read(1, P * N - 1)
                    survivors += 1
                except StateError:
                    pass
                del q
        threads = [threading.Thread(target=spin) for _ in range(2)]
        for t in threads:
            t.start()
        del p
        time.sleep(0.001)
        stop = True
        for t in threads:
            t.join()
    print("ok", survivors)
    """
)


def test_finaliser_racing_a_weak_reference_never_crashes() -> None:
    """A weak reference can hand a Pages to another thread while ``__del__``
    unmaps it (the finaliser runs before weak references are cleared, and
    munmap releases the GIL): that thread must see it closed."""
    done = run_python(RESURRECTION_RACE, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("ok")
