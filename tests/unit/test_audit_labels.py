"""One escaping rule for names in every output of the audit (sealkit.text.label).

Command names and paths are bytes chosen by whoever made them. The rule
must give valid UTF-8 text (no lone surrogate in JSON, RFC 8259 leaves
those undefined), be injective (two names never share a Prometheus series)
and be the same text in the table, JSON, Prometheus and SVG.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealkit import text as text_module
from sealkit._os.procfs import Vma
from sealkit.cli.commands.audit import _table
from sealkit.host import audit, mapsvg
from sealkit.host.outputs import json_text
from sealkit.text import label, printable, unlabel
from tests.kernel.test_audit import parse_prometheus

# Names printable() wrote alike: a control byte, and the four characters
# that spell its escape; a C1 control (valid UTF-8) and an undecodable byte.
ALIKE = [("a\x01", "a\\x01"), ("b\x85", "b\udc85"), ("c\\n", "c\n")]


def test_the_old_rule_wrote_these_names_alike_and_label_does_not() -> None:
    for one, other in ALIKE:
        assert printable(one) == printable(other)
        assert label(one) != label(other)


@given(st.text())
def test_label_is_valid_utf8_one_line_and_undone_by_unlabel(text: str) -> None:
    shown = label(text)
    shown.encode("utf-8")  # strict: no lone surrogate
    assert "\n" not in shown and "\x1b" not in shown and "\u202e" not in shown
    assert unlabel(shown) == text
    assert json.loads(json.dumps(shown, ensure_ascii=False)) == shown


@given(st.binary(max_size=20))
def test_any_bytes_come_back(raw: bytes) -> None:
    name = os.fsdecode(raw)
    assert os.fsencode(unlabel(label(name))) == raw


@given(st.text(), st.text())
def test_label_is_injective(one: str, other: str) -> None:
    if one != other:
        assert label(one) != label(other)


def test_plain_names_are_unchanged() -> None:
    for name in ("nginx", "python3.11", "sk-fleet-seal", "émoji ☃", "[vdso]", "/usr/lib/a b.so"):
        assert label(name) == name


def _report() -> audit.HostAudit:
    procs = []
    for pid, name in enumerate([n for pair in ALIKE for n in pair], start=10):
        procs.append(audit.ProcessAudit(pid, name, 0, "root", "ok", 3, ()))
    return audit.HostAudit("h", "6.18", 0.0, 0.1, tuple(procs), vanished=0, kernel_threads=0)


def test_names_that_printed_alike_get_a_series_each_and_the_same_text_everywhere() -> None:
    report = _report()
    samples = parse_prometheus(audit.to_prometheus(report))  # strict: no duplicate series
    series = {
        re.sub(r"\\(.)", r"\1", m.group(1))  # the exposition format's own escapes, undone
        for key in samples
        if key.startswith("sealkit_audit_command_processes{")
        for m in [re.search(r'command="((?:[^"\\]|\\.)*)"', key)]
        if m
    }
    names = [p.command for p in report.processes]
    assert len(series) == len(names) == 6
    assert series == {label(n) for n in names if n is not None}
    doc = json.loads(json_text(audit.to_json(report)))
    assert [p["command"] for p in doc["processes"]] == [label(n) for n in names if n is not None]
    assert "\\ud" not in json_text(audit.to_json(report))  # no lone surrogate escape
    table = _table(report, sealed_only=False, to_file=True)
    assert table is not None
    for name in names:
        assert name is not None
        assert f" {label(name)} " in table
    for name in names:
        assert name is not None
        maps = audit.ProcessMaps(
            1, name, (audit.MappedRegion(Vma(0x1000, 0x2000, "r--p", 0, "00:00", 0, name,
                                             frozenset()), "anon"),)
        )  # fmt: skip
        root = ET.fromstring(mapsvg.render_svg(maps))
        title = "".join(root.find("{http://www.w3.org/2000/svg}title").itertext())  # type: ignore[union-attr]
        assert label(name) in title


def test_the_fast_json_is_the_same_document() -> None:
    """``sealkit audit --json`` writes sealed mappings row by row
    (audit_json_text): the same document as the dicts of to_json."""
    from sealkit.host.outputs import audit_json_text

    odd = "/lib/o\\dd \udcff\n\u202e.so"
    mappings = tuple(
        audit.SealedMapping(0x1000 * i, 0x1000 * (i + 1), "r--p", "relro", odd if i % 2 else "")
        for i in range(1, 6)
    )
    procs = (
        audit.ProcessAudit(1, "a\x01", 0, "root", "ok", 9, mappings),
        audit.ProcessAudit(2, None, 0, "root", "denied", None, None, "why"),
        audit.ProcessAudit(3, "b", 7, "u\udcfe", "ok", 3, ()),
    )
    report = audit.HostAudit("h", "6.18", 0.0, 0.1, procs, vanished=0, kernel_threads=0)
    results = audit.check_requirements(report, [audit.parse_requirement("complete")])
    for sealed_only in (False, True):
        fast = audit_json_text(report, sealed_only=sealed_only, requirements=results)
        slow = json_text(audit.to_json(report, sealed_only=sealed_only, requirements=results))
        assert json.loads(fast) == json.loads(slow)
        assert "\\ud" not in fast and fast.count("\n") == slow.count("\n")
    empty = audit.HostAudit("h", "6.18", 0.0, 0.1, (), vanished=0, kernel_threads=0)
    assert json.loads(audit_json_text(empty)) == json.loads(json_text(audit.to_json(empty)))


def test_a_requirement_given_twice_is_one_series_and_one_result() -> None:
    """``--require complete --require complete`` wrote the same series twice
    (which Prometheus refuses: the whole textfile is lost) and printed each
    unmet requirement twice."""
    report = _report()
    twice = [audit.parse_requirement(t) for t in ("complete", "sealed:a*", "complete", "sealed:a*")]
    results = audit.check_requirements(report, twice)
    assert [r.requirement for r in results] == ["complete", "sealed:a*"]
    samples = parse_prometheus(audit.to_prometheus(report, results))  # strict: no duplicate series
    assert sorted(k for k in samples if k.startswith("sealkit_audit_requirement_met")) == [
        'sealkit_audit_requirement_met{host="h",requirement="complete"}',
        'sealkit_audit_requirement_met{host="h",requirement="sealed:a*"}',
    ]
    doc = json.loads(json_text(audit.to_json(report, requirements=results)))
    assert [r["requirement"] for r in doc["requirements"]] == ["complete", "sealed:a*"]
    # results repeated by a caller of the library: still one series each
    again = parse_prometheus(audit.to_prometheus(report, [*results, *results]))
    assert again == samples


def test_the_quick_path_of_label_agrees_with_the_pattern() -> None:
    """label() returns printable ASCII without a backslash at once; every
    code point, alone and between letters, gets what the pattern gives."""
    pattern = re.compile(text_module._LABEL_UNSAFE)
    for code in range(0x110000):
        for name in (chr(code), f"a{chr(code)}b"):
            slow = (
                name
                if pattern.search(name) is None
                else pattern.sub(text_module._label_escape, name)
            )
            assert label(name) == slow, hex(code)


class _LyingName(str):
    """A str whose own methods say it is plain printable ASCII."""

    def isascii(self) -> bool:
        return True

    def isprintable(self) -> bool:
        return True

    def __contains__(self, key: object) -> bool:
        return False


@pytest.mark.parametrize("value", [None, 5, b"abc", bytearray(b"x")])
def test_label_of_what_is_not_text_is_a_type_error(value: object) -> None:
    """label() of a value that is not a str raises TypeError, as the
    pattern always did; its quick path must not turn that into an
    AttributeError (bytes have isascii() but no isprintable())."""
    with pytest.raises(TypeError):
        label(value)  # type: ignore[arg-type]


def test_label_reads_the_characters_not_a_subclass_s_methods() -> None:
    """The quick path asks str's own methods: a str subclass that claims
    to be printable ASCII is still escaped by its characters."""
    name = _LyingName("a\x1b[2Jb\\")
    assert label(name) == "a\\x1b[2Jb\\\\"
