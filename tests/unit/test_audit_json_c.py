"""``sealkit audit --json``'s sealed lists written in C
(``_fastsys.sealed_json_rows``) against the Python writer: byte for byte, on
a real sweep, on crafted rows (names that are not UTF-8, control
characters, numbers past 64 bits, a mapping that ends before it starts,
kinds that are not known) and on generated ones; refused (None) where the
Python writer must write.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealkit.host import outputs
from sealkit.host.classify import KINDS
from sealkit.host.sweep import HostAudit, ProcessAudit, SealedMapping, scan_host

fastsys = pytest.importorskip(
    "sealkit._os._fastsys", reason="the C extension was not built (no compiler at install)"
)


@contextlib.contextmanager
def _python_only() -> Iterator[None]:
    saved = outputs._FORCE_PYTHON
    outputs._FORCE_PYTHON = True
    try:
        yield
    finally:
        outputs._FORCE_PYTHON = saved


def _both(audit: HostAudit) -> str:
    fast = outputs.audit_json_text(audit)
    with _python_only():
        slow = outputs.audit_json_text(audit)
    assert fast == slow
    return fast


def _host(*sealed: tuple[SealedMapping, ...] | None) -> HostAudit:
    rows = tuple(
        ProcessAudit(i + 1, "c", 0, "root", "denied", None, None)
        if s is None
        else ProcessAudit(i + 1, "c", 0, "root", "ok", 10, s)
        for i, s in enumerate(sealed)
    )
    return HostAudit("h", "6.18", 0.0, 0.5, rows, 0, 0)


def test_the_c_writer_is_in_use() -> None:
    row = SealedMapping(0x1000, 0x3000, "r--p", "text", "/lib/x")
    assert outputs._sealed_rows is fastsys.sealed_json_rows
    assert fastsys.sealed_json_rows((row,), outputs._text_of) == (
        '{"start": "0x1000", "end": "0x3000", "size": 8192, "perms": "r--p", "kind": "text", '
        '"path": "/lib/x"}'
    )


def test_a_real_sweep_agrees() -> None:
    code = (
        "import sys, sealkit\n"
        "keep = [sealkit.freeze(i.to_bytes(8, 'little')) for i in range(50)]\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        audit = scan_host(pids=[child.pid, 1])
    finally:
        child.communicate(timeout=60)
    assert (audit.processes[-1].sealed_mappings or 0) >= 50
    _both(audit)


@pytest.mark.parametrize(
    "rows",
    [
        (),
        (SealedMapping(0, 0, "---p", "guard", ""),),
        (SealedMapping(0x1000, 0x2000, "r--p", "file", "/tmp/\udcff not utf-8\n\t\x1b"),),
        (SealedMapping(0x1000, 0x2000, "r--p", "file", '/tmp/\u2028 "quoted" \\'),),
        (SealedMapping((1 << 64) - 0x1000, (1 << 64) - 1, "r--p", "anon", ""),),
        (SealedMapping(0x1000, 1 << 64, "r--p", "anon", ""),),  # past 64 bits: Python's
        (SealedMapping(0x3000, 0x2000, "r--p", "anon", ""),),  # ends before it starts
        (SealedMapping(True, 0x2000, "r--p", "anon", ""),),  # a bool is not written as 1
        (SealedMapping(0x1000, 0x2000, "r--p", "not a kind", ""),),
        (SealedMapping(0x1000, 0x2000, "rw\u00e9p", "anon", ""),),  # escaped by the encoder
    ],
)
def test_crafted_rows_agree(rows: tuple[SealedMapping, ...]) -> None:
    _both(_host(rows, None, rows))


def test_the_c_writer_sums_each_kind() -> None:
    rows = (
        SealedMapping(0x1000, 0x3000, "r--p", "text", "/lib/x"),
        SealedMapping(0x5000, 0x6000, "rw-p", "anon", ""),
        SealedMapping(0x8000, 0xB000, "r--p", "text", "/lib/x"),
    )
    text, counts, sizes = fastsys.sealed_json_rows(
        rows, outputs._text_of, tuple(KINDS), SealedMapping
    )
    assert text == fastsys.sealed_json_rows(rows, outputs._text_of)
    got = {k: (n, b) for k, n, b in zip(KINDS, counts, sizes, strict=True) if n}
    assert got == _host(rows).processes[0].by_kind() == {"text": (2, 0x5000), "anon": (1, 0x1000)}


def test_what_the_c_writer_refuses() -> None:
    text_of = outputs._text_of
    kinds = tuple(KINDS)

    def summed(rows: object) -> object:
        return fastsys.sealed_json_rows(rows, text_of, kinds, SealedMapping)

    # each of these is the Python writer's turn (None)
    assert summed((SealedMapping(1, 2, "r--p", ["x"], ""),)) is None  # type: ignore[arg-type]
    assert summed((SealedMapping(1, 2, "r--p", "not a kind", ""),)) is None
    assert summed(((1, 2, "r--p", "anon", ""),)) is None  # a tuple, not a SealedMapping

    class Kind(str):
        pass

    assert summed((SealedMapping(1, 2, "r--p", Kind("anon"), ""),)) is None
    huge = SealedMapping(0, (1 << 64) - 1, "r--p", "anon", "")
    assert summed((huge, huge)) is None  # the sum passes 64 bits
    assert summed((huge,)) is not None
    _both(_host((huge, huge)))
    with pytest.raises(ValueError):
        fastsys.sealed_json_rows((), text_of, (), SealedMapping)  # no kinds
    with pytest.raises(ValueError):
        fastsys.sealed_json_rows((), text_of, (1,), SealedMapping)  # not str
    with pytest.raises(ValueError):
        fastsys.sealed_json_rows((), text_of, kinds)  # no row type
    assert fastsys.sealed_json_rows(((1, 2, "r--p", "anon"),), text_of) is None  # four fields
    assert fastsys.sealed_json_rows(([1, 2, "r--p", "anon", ""],), text_of) is None  # a list
    assert fastsys.sealed_json_rows(((-1, 2, "r--p", "anon", ""),), text_of) is None
    with pytest.raises(TypeError):
        fastsys.sealed_json_rows([(1, 2, "r--p", "anon", "")], text_of)  # not a tuple
    with pytest.raises(ValueError):  # text_of must answer ASCII
        fastsys.sealed_json_rows(((1, 2, "r--p", "anon", ""),), lambda k, v: "\xe9")
    with pytest.raises(ValueError):  # a kind that is not ASCII
        fastsys.sealed_json_rows(((1, 2, "r--p", "\xe9", ""),), text_of)
    with pytest.raises(ZeroDivisionError):
        fastsys.sealed_json_rows(((1, 2, "r--p", "anon", ""),), lambda k, v: 1 / 0)


_rows = st.lists(
    st.builds(
        lambda lo, size, perms, kind, path: SealedMapping(lo, lo + size, perms, kind, path),
        st.integers(0, 1 << 64), st.integers(0, 1 << 20), st.sampled_from(["r--p", "rw-s", "---p"]),
        st.sampled_from(KINDS), st.text(max_size=6),
    ),
    max_size=8,
).map(tuple)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_rows, max_size=3))
def test_generated_rows_agree(lists: list[tuple[SealedMapping, ...]]) -> None:
    _both(_host(*lists))


def test_a_kind_of_any_text_is_written_as_json() -> None:
    """The Python writer (the C one refuses kinds it does not know) escapes
    a kind as the json module does: the text parses to to_json's document."""
    rows = (SealedMapping(0x1000, 0x2000, "r--p", 'a "quoted"\\ kind\n', ""),)
    audit = _host(rows)
    text = _both(audit)
    assert json.loads(text) == outputs.to_json(audit)
