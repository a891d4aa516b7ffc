"""The C classifier (``_fastsys.classify_kinds``) against the Python one.

``sealkit.host.classify.classify`` hands columns of the shape the smaps
scanner makes to the C rules and keeps ``_Process.kinds`` (Python) as the
reference and the fallback: for anything else the C side returns None and
Python answers. Both must give the same kinds on the mappings of real
processes (with the program headers of their files, as ``sealkit maps``
reads them), on the layouts of tests/unit/test_audit_complexity.py (which
also runs every one of its tests both ways), and on hostile columns and
layouts, where the C side must refuse rather than guess, and never crash.
"""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealkit._os import procfs
from sealkit._os.elf import LoadLayout, Segment
from sealkit._os.procfs import ProcessDir, Vma, VmaColumns, scan_smaps
from sealkit.errors import AccessDeniedError, ArgumentError, ArgumentTypeError, ProcessGoneError
from sealkit.host import classify as classify_module
from sealkit.host.classify import KINDS, FileLayouts, classify
from tests.unit.naive_classify import naive_classify
from tests.unit.test_audit_complexity import BUILDERS, LAYOUT, layout_of, vma

fastsys = pytest.importorskip(
    "sealkit._os._fastsys", reason="the C extension was not built (no compiler at install)"
)
if getattr(fastsys, "classify_kinds", None) is None:  # pragma: no cover - build dependent
    pytest.skip("the C classifier was not built (no 128-bit integers)", allow_module_level=True)

PAGE = 4096
_ROOT = str(Path(__file__).resolve().parents[2])


@contextlib.contextmanager
def _python_only() -> Iterator[None]:
    saved = classify_module._FORCE_PYTHON
    classify_module._FORCE_PYTHON = True
    try:
        yield
    finally:
        classify_module._FORCE_PYTHON = saved


def _in_c(vmas: Any, layout: Any = None, wanted: list[int] | None = None) -> list[str] | None:
    """The C classifier's own answer (None: it refused)."""
    return classify_module._Process(vmas, layout).kinds_in_c(wanted)


def _both(vmas: Any, layout: Any = None, indices: list[int] | None = None) -> list[str]:
    """classify() with the C rules and with the Python ones: the same kinds."""
    fast = classify(vmas, layout, indices)
    with _python_only():
        slow = classify(vmas, layout, indices)
    assert fast == slow
    return fast


def test_the_c_classifier_is_in_use() -> None:
    assert classify_module._classify_kinds is fastsys.classify_kinds
    vmas = BUILDERS["elf_as_data"](30)
    assert _in_c(vmas, layout_of) == naive_classify(vmas, layout_of)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_layouts_are_classified_in_c(name: str) -> None:
    vmas = BUILDERS[name](200)
    assert _in_c(vmas, layout_of) == naive_classify(vmas, layout_of)
    assert _in_c(vmas) == naive_classify(vmas)
    some = list(range(len(vmas) - 1, -1, -3))  # any order, as the sweep may ask
    assert _in_c(vmas, layout_of, some) == naive_classify(vmas, layout_of, some)


@contextlib.contextmanager
def _processes() -> Iterator[list[str]]:
    """This process, two interpreters of our own (one with sealed, frozen
    values), then up to 40 other processes of the host."""
    code = (
        "import sys, decimal, ctypes, sqlite3\n"
        "if sys.argv[1] == 'freeze':\n"
        "    import sealkit\n"
        "    keep = [sealkit.freeze(i.to_bytes(8, 'little')) for i in range(300)]\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for mode in ("plain", "freeze")
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        others = sorted((n for n in procfs.os.listdir("/proc") if n.isdigit()), key=int)[:40]
        yield ["self", *(str(c.pid) for c in children), *others]
    finally:
        for child in children:
            child.communicate(timeout=60)


def test_real_processes_agree() -> None:
    """Every mapping of real processes, with their files' program headers
    (as sealkit maps reads them), and the sealed ones alone (as the sweep
    asks); the C classifier takes each of them."""
    checked = 0
    with _processes() as pids:
        for name in pids:
            try:
                with ProcessDir(name) as proc:
                    data = proc.smaps(proc.status().state)
                    if not data:
                        continue
                    _, vmas = scan_smaps(data, "src", every=True)
                    files = FileLayouts()
                    lookup = lambda v, p=proc, f=files: f.lookup(p, v)  # noqa: E731
                    assert _in_c(vmas, lookup) is not None
                    kinds = _both(vmas, lookup)
                    assert set(kinds) <= set(KINDS)
                    sealed = [i for i, f in enumerate(vmas.columns().vmflags) if "sl" in f]
                    _both(vmas, lookup, sealed)
                    _both(vmas)  # the heuristics: no program headers
            except (ProcessGoneError, AccessDeniedError):
                continue
            checked += 1
    assert checked >= 3


# --- hostile columns: the C side refuses, Python answers (or raises) alike ---------


def _columns(vmas: list[Vma]) -> list[list[Any]]:
    return [list(c) for c in VmaColumns.of(vmas)]


def _call(columns: list[list[Any]], facts: Any = None, wanted: Any = None) -> list[str] | None:
    start, end, perms, _offset, dev, inode, path, vmflags = columns
    return fastsys.classify_kinds(
        start, end, perms, path, dev, inode, vmflags, wanted, facts or (lambda i: 0), KINDS
    )


BASE = [
    vma(0x10000, 1, "r--p", "/lib/a", 5, 0),
    vma(0x11000, 1, "rw-p", "", 0, 0, frozenset({"gd", "sl"})),
    vma(0x12000, 1, "rw-p", "[heap]"),
]


class _Str(str):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (0, -1),  # a negative address
        (1, 1 << 64),  # past 64 bits
        (0, True),  # a bool is an int, but not exactly
        (1, _Int(0x12000)),
        (2, "r--"),  # permissions of another length
        (2, _Str("r--p")),
        (6, b"/lib/a"),  # a path that is not a str
        (6, _Str("[heap]")),
        (4, None),  # a device that is not a str
        (7, ["sl"]),  # flags that are not a set
        (7, frozenset({1, "gd"})),  # a flag that is not a str
        (7, frozenset({_Str("gd")})),
    ],
)
def test_unusual_columns_are_left_to_python(column: int, value: object) -> None:
    columns = _columns(BASE)
    assert _call(columns) is not None
    columns[column][1] = value
    assert _call(columns) is None
    vmas = [Vma(*(c[i] for c in columns)) for i in range(len(BASE))]  # type: ignore[arg-type]
    try:
        expected: object = naive_classify(vmas)
    except Exception as exc:  # the same error either way
        expected = type(exc)
    try:
        got: object = classify(vmas)
    except Exception as exc:
        got = type(exc)
    assert got == expected


def test_unusual_calls_are_refused() -> None:
    columns = _columns(BASE)
    assert _call(columns, wanted=[0, 3]) is None  # an index past the mappings
    assert _call(columns, wanted=[-1]) is None
    assert _call(columns, wanted=[1 << 70]) is None
    assert _call(columns, wanted=(0, 1)) is None  # wanted must be a list
    columns[4] = columns[4][:2]  # columns of different lengths
    assert _call(columns) is None
    start, end, perms, _offset, dev, inode, path, vmflags = _columns(BASE)
    assert (
        fastsys.classify_kinds(start, end, perms, path, dev, inode, vmflags, None, int, ("x",))
        is None
    )
    with pytest.raises(TypeError):
        fastsys.classify_kinds(start, end)


@pytest.mark.parametrize(
    "facts",
    [
        7,  # not 0, 1 or 2
        -1,
        1 << 70,  # an int past a C long: refused, not OverflowError
        -(1 << 70),
        1 << 63,
        (0, 0),  # a tuple of another shape
        (0, 1 << 64, [], [], [], [], None, [], []),  # a number past 64 bits
        (0, 0, [0], [], [], [], None, [], []),  # load_lo and load_hi of different lengths
        (0, 0, [0] * 65, [1] * 65, [], [], None, [], []),  # more spans than any layout has
        (0, 0x1000, [0], [0x1000], [], [], (0, 1, 2), [], []),  # a relro of three numbers
        (0, 0x1000, [0], [0x1000], [], [], None, [0], [5]),  # a placement past the mappings
        (0, 0x1000, [0], [0x1000], [], [], None, [9], [-1]),
        (0, 0x1000, [0], [0x1000], [], [], None, [0, 1], [0]),
        (0, 0x1000, [0], [0x1000], [], [], None, [0], [True]),
        "not-elf",
    ],
)
def test_facts_of_an_unusual_shape_are_refused(facts: object) -> None:
    assert _call(_columns(BASE), lambda i: facts) is None


def test_facts_that_raise_raise() -> None:
    def facts(i: int) -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        _call(_columns(BASE), facts)

    def layout(v: Vma) -> object:
        raise RuntimeError("layout")

    with pytest.raises(RuntimeError, match="layout"):
        classify(BASE, layout)
    with _python_only(), pytest.raises(RuntimeError, match="layout"):
        classify(BASE, layout)


def test_facts_that_change_the_columns_change_nothing_here() -> None:
    """The columns are copied before facts runs: emptying them (and the
    wanted list) meanwhile changes no answer and reads no freed memory."""
    vmas = BUILDERS["elf_as_data"](300)
    columns = _columns(vmas)
    expected = naive_classify(vmas, layout_of)
    process = classify_module._Process(vmas, layout_of)
    wanted = list(range(len(vmas)))

    def facts(i: int) -> object:
        answer = process._facts(i)
        for column in columns:
            column.clear()
        wanted.clear()
        gc.collect()
        return answer

    start, end, perms, _offset, dev, inode, path, vmflags = columns
    found = fastsys.classify_kinds(start, end, perms, path, dev, inode, vmflags, None, facts, KINDS)
    assert found == expected
    columns = _columns(vmas)
    wanted[:] = range(len(vmas))
    start, end, perms, _offset, dev, inode, path, vmflags = columns
    # the wanted list emptied under it: refused, not read past its end
    assert (
        fastsys.classify_kinds(start, end, perms, path, dev, inode, vmflags, wanted, facts, KINDS)
        is None
    )


def test_a_layout_of_that_walks_the_heap_sees_no_half_built_list() -> None:
    """layout_of is the caller's code and runs in the middle of the C
    classifier: one that walks every object the collector knows (a leak
    finder, a debugger) and copies each list must find no list with holes
    in it (it crashed the interpreter when the answer's list was made
    before the facts were asked). In a child: a crash must not take the
    test run with it."""
    code = (
        "import gc\n"
        "from sealkit.host.classify import classify\n"
        "from tests.unit.naive_classify import naive_classify\n"
        "from tests.unit.test_audit_complexity import BUILDERS, layout_of\n"
        "vmas = BUILDERS['many_libraries'](50)\n"
        "def nosy(v):\n"
        "    for o in gc.get_objects():\n"
        "        if type(o) is list:\n"
        "            o[:]\n"
        "    return layout_of(v)\n"
        "assert classify(vmas, nosy) == naive_classify(vmas, layout_of)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=_ROOT,
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr[-2000:]


def test_offsets_equal_to_ints_place_objects_as_ints_do() -> None:
    """Offsets of another number type that equal the int (0.0 == 0): the
    filter of file mappings at a first PT_LOAD's offset compares them as
    the dictionaries did (int.__eq__(0.0) is NotImplemented, which the
    filter read as true, with a DeprecationWarning, an error here)."""
    vmas = BUILDERS["many_libraries"](20)
    floats = [v._replace(offset=float(v.offset)) for v in vmas]
    assert _both(floats, layout_of) == naive_classify(floats, layout_of)
    assert _both(floats, layout_of) == naive_classify(vmas, layout_of)


def test_an_elf_layout_past_64_bits_is_left_to_python() -> None:
    """A crafted file whose segments reach past 2**64: Python's integers
    place it; the C side refuses its facts."""
    huge = LoadLayout.of(64, True, 3, (
        Segment(1, 5, 0, 0, 0x1000, 0x1000, 0x1000),
        Segment(1, 6, 0x1000, 0x1000, 0x1000, 1 << 64, 0x1000),  # .bss to past 2**64
    ))  # fmt: skip
    vmas = [
        vma(0x10000, 1, "r-xp", "/lib/h", 3, 0),
        vma(0x11000, 1, "rw-p", "/lib/h", 3, 0x1000),
        vma(0x12000, 4, "rw-p"),
    ]
    assert _in_c(vmas, lambda v: huge) is None
    assert classify(vmas, lambda v: huge) == naive_classify(vmas, lambda v: huge)
    assert classify(vmas, lambda v: huge) == ["text", "data", "data"]


def test_addresses_at_the_top_of_64_bits() -> None:
    """Biases below zero and ends past 2**64 - 1 in 128-bit arithmetic:
    the same answers as Python's integers."""
    top = (1 << 64) - 4 * PAGE
    vmas = [
        vma(top, 1, "r--p", "/lib/libx.so", 9, 0),
        vma(top + PAGE, 1, "r-xp", "/lib/libx.so", 9, 0x1000),
        vma(top + 2 * PAGE, 1, "rw-p"),
        vma(PAGE, 1, "r--p", "/lib/libx.so", 9, 0x3000),
    ]
    assert _in_c(vmas, lambda v: LAYOUT) == naive_classify(vmas, lambda v: LAYOUT)
    assert _both(vmas, lambda v: LAYOUT) == naive_classify(vmas, lambda v: LAYOUT)


def test_only_the_scanners_own_indices_go_unchecked() -> None:
    """classify() trusts the sealed indices the C scanner found (it made
    them: ints, in range) and checks any others, also ones assigned to the
    same ScannedVmas afterwards."""
    with ProcessDir("self") as proc:
        data = proc.read("smaps")
    lines = data.split(b"\n")
    flags_at = next(i for i, line in enumerate(lines) if line.startswith(b"VmFlags:"))
    lines[flags_at] += b" sl"  # one sealed mapping, so the scanner builds columns
    _count, vmas = scan_smaps(b"\n".join(lines))
    assert vmas.sealed_indices == (0,) and vmas._scanned is vmas.sealed_indices
    assert len(classify(vmas, None, vmas.sealed_indices)) == 1
    for bad, error in (((len(vmas),), ArgumentError), ((-1,), ArgumentError)):
        vmas.sealed_indices = bad
        with pytest.raises(error):
            classify(vmas, None, vmas.sealed_indices)
    with pytest.raises(ArgumentTypeError):
        classify(vmas, None, ["0"])  # type: ignore[list-item]
