"""``sealkit audit`` and ``sealkit maps`` against real processes that seal.

Children seal memory through the library (a sealed ``Pages`` page and a
sealed mapping of a file, ``map_file``); the audit and maps must report exactly those
ranges as sealed and nothing else. Other children seal an extension
module's mappings, the vDSO and the stack (through the raw call, as
hardening does) or a C program's ``.bss``, to hold the classification to
real layouts. The sweep also runs as an unprivileged user against root
processes: they must be DENIED, never "not sealed".
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import sealkit
from sealkit._os import elf as elf_file
from sealkit._os.procfs import ProcessDir
from sealkit.cli.main import main as cli_main
from sealkit.host import audit
from sealkit.text import label, unlabel
from tests.conftest import python_env, run_in_child

pytestmark = pytest.mark.kernel

DATA = Path(sealkit.__file__).parent / "data"
AUDIT_SCHEMA = json.loads((DATA / "audit.schema.json").read_text())
MAPS_SCHEMA = json.loads((DATA / "maps.schema.json").read_text())
PAGE = 4096

SEALER = r"""
import json, sys
import sealkit
open("/proc/self/comm", "w").write(sys.argv[2])
pages = sealkit.Pages(4096)
pages.write(b"a sealed page")
pages.seal()
mapped = sealkit.map_file(sys.argv[1], length=8192)  # read-only, shared, sealed
print(json.dumps({"page": [pages.address, pages.address + 4096],
                  "file": [mapped.address, mapped.address + mapped.size]}), flush=True)
sys.stdin.read()
"""

PLAIN = r"""
import json, sys
open("/proc/self/comm", "w").write(sys.argv[1])
print("{}", flush=True)
sys.stdin.read()
"""

NAMED = r"""
import sys
open("/proc/self/comm", "wb").write(sys.argv[1].encode("latin-1"))  # any bytes
print("{}", flush=True)
sys.stdin.read()
"""

# Seals, with the raw call (as hardening does), every mapping of the _json
# extension module, the vDSO and the main stack: a real ELF layout.
ELF_SEALER = r"""
import json, sys, _json
from sealkit._os import procfs, syscalls
open("/proc/self/comm", "w").write("sk-elfseal")
done = []
for v in procfs.read_smaps():
    if v.path == _json.__file__ or v.path in ("[vdso]", "[stack]"):
        syscalls.mseal(v.start, v.size)
        done.append([v.start, v.end, v.perms, v.offset, v.path])
print(json.dumps(done), flush=True)
sys.stdin.read()
"""

BSS_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static char big[1 << 20];           /* .bss: anonymous memory past the file */
int main(void) {
    uintptr_t lo = ((uintptr_t)big + 4095) & ~(uintptr_t)4095;
    uintptr_t hi = ((uintptr_t)big + sizeof big) & ~(uintptr_t)4095;
    big[0] = 1;
    if (syscall(462, lo, hi - lo, 0) != 0) { perror("mseal"); return 1; }
    printf("[%lu, %lu]\n", (unsigned long)lo, (unsigned long)hi);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
"""


@contextmanager
def running(cmd: list[str]) -> Iterator[tuple[int, Any]]:
    """Start ``cmd``, read its first stdout line as JSON, stop it afterwards
    (closing its stdin ends it; killed if it lingers)."""
    with subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=python_env(),
    ) as child:  # fmt: skip
        try:
            assert child.stdout is not None and child.stderr is not None
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child failed: {child.stderr.read()}")
            yield child.pid, json.loads(line)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def datafile(tmp_path: Path) -> str:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(3 * PAGE))
    return str(path)


@pytest.fixture
def sealer(datafile: str) -> Iterator[tuple[int, dict[str, list[int]]]]:
    with running([sys.executable, "-c", SEALER, datafile, "sk-sealer"]) as found:
        yield found


def cli(*args: str) -> tuple[int, str, str]:
    """Run the command line in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def _ranges(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((int(r["start"], 16), int(r["end"], 16)) for r in rows)


def test_audit_reports_exactly_the_sealed_ranges(
    sealer: tuple[int, dict[str, list[int]]], datafile: str
) -> None:
    pid, sealed = sealer
    code, out, err = cli("audit", "--json", "--pid", str(pid))
    assert (code, err) == (0, "")
    doc = json.loads(out)
    jsonschema.validate(doc, AUDIT_SCHEMA)
    [proc] = doc["processes"]
    assert (proc["pid"], proc["command"], proc["status"]) == (pid, "sk-sealer", "ok")
    assert _ranges(proc["sealed"]) == sorted(map(tuple, sealed.values()))
    by_start = {int(r["start"], 16): r for r in proc["sealed"]}
    page, file = by_start[sealed["page"][0]], by_start[sealed["file"][0]]
    assert (page["kind"], page["perms"], page["path"], page["size"]) == ("anon", "rw-p", "", PAGE)
    assert (file["kind"], file["perms"], file["path"], file["size"]) == (
        "file", "r--s", datafile, 2 * PAGE,
    )  # fmt: skip
    assert proc["sealed_kinds"] == {
        "file": {"mappings": 1, "bytes": 2 * PAGE},
        "anon": {"mappings": 1, "bytes": PAGE},
    }
    assert (proc["sealed_mappings"], proc["sealed_bytes"]) == (2, 3 * PAGE)
    # Nothing else: the mapping count is every VMA of the child.
    from sealkit._os.procfs import read_smaps

    vmas = read_smaps(pid)
    assert proc["mappings"] == len(vmas)
    assert [(v.start, v.end) for v in vmas if v.sealed] == _ranges(proc["sealed"])
    assert doc["summary"] == {
        "seen": 1, "sealed": 1, "denied": 0, "cut_short": 0, "unreached": 0, "changed": 0, "vanished": 0,
        "zombies": 0, "not_found": 0, "kernel_threads": 0, "sealed_mappings": 2,
        "sealed_bytes": 3 * PAGE,
    }  # fmt: skip


def test_maps_reports_exactly_the_sealed_ranges(sealer: tuple[int, dict[str, list[int]]]) -> None:
    pid, sealed = sealer
    code, out, err = cli("maps", str(pid), "--json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    jsonschema.validate(doc, MAPS_SCHEMA)
    assert _ranges([r for r in doc["regions"] if r["sealed"]]) == sorted(
        map(tuple, sealed.values())
    )
    assert doc["sealed_mappings"] == 2 and doc["sealed_bytes"] == 3 * PAGE
    assert all(("sl" in r["vmflags"]) == r["sealed"] for r in doc["regions"])
    kinds = {r["kind"] for r in doc["regions"]}
    assert {"text", "rodata", "relro", "data", "heap", "stack", "system"} <= kinds
    code, out, _ = cli("maps", str(pid))
    assert code == 0
    rows = [line for line in out.splitlines()
            if re.match(r"[0-9a-f]{12}-[0-9a-f]{12} ", line) and "sealed" in line.split()]  # fmt: skip
    assert len(rows) == 2
    assert {row.split()[0] for row in rows} == {f"{a:012x}-{b:012x}" for a, b in sealed.values()}


def _groups(regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent regions with the same path, perms, kind and seal, merged
    (independently of sealkit.host.mapsvg)."""
    groups: list[dict[str, Any]] = []
    for r in regions:
        key = (r["path"], r["perms"], r["kind"], r["sealed"])
        if groups and groups[-1]["key"] == key and groups[-1]["end"] == r["start"]:
            groups[-1]["end"] = r["end"]
        else:
            groups.append({"key": key, "start": r["start"], "end": r["end"]})
    return groups


def _svg_renderer() -> list[str] | None:
    """A command that renders SVG to PNG here, if any."""
    if shutil.which("rsvg-convert"):
        return ["rsvg-convert", "-o"]
    convert = shutil.which("convert")
    if convert:
        formats = subprocess.run([convert, "-list", "format"], capture_output=True, text=True,
                                 check=False)  # fmt: skip
        if re.search(r"^\s*SVG\b.*r", formats.stdout, re.M):
            return [convert, "svg:-"]
    return None


def test_maps_svg(sealer: tuple[int, dict[str, list[int]]], tmp_path: Path) -> None:
    pid, sealed = sealer
    svg = tmp_path / "maps.svg"
    code, out, err = cli("maps", str(pid), "--json", "--svg", str(svg))
    assert (code, err) == (0, "")
    regions = json.loads(out)["regions"]
    root = ET.parse(svg).getroot()  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    shapes = [r for r in root.iter("{http://www.w3.org/2000/svg}rect")
              if "vma" in r.get("class", "").split()]  # fmt: skip
    groups = _groups(regions)
    assert [(s.get("data-start"), s.get("data-end")) for s in shapes] == [
        (g["start"], g["end"]) for g in groups
    ]
    marked = [s for s in shapes if "sealed" in s.get("class", "").split()]
    assert _ranges([{"start": s.get("data-start"), "end": s.get("data-end")} for s in marked]) == (
        sorted(map(tuple, sealed.values()))
    )
    assert all(s.get("data-sealed") == "true" for s in marked)
    texts = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "unmapped" in texts  # huge gaps are compressed and labelled
    assert "libc.so.6" in texts and "[vdso]" in texts  # objects are named
    assert root.find("s:title", ns) is not None


@pytest.mark.skipif(
    _svg_renderer() is None,
    reason="no SVG renderer here (rsvg-convert, or ImageMagick built with SVG): "
    "test_maps_svg checks the XML only",
)
def test_maps_svg_renders_to_png(tmp_path: Path) -> None:
    svg = tmp_path / "maps.svg"
    code, _, err = cli("maps", "self", "--svg", str(svg))
    assert (code, err) == (0, "")
    renderer = _svg_renderer()
    assert renderer is not None
    png = tmp_path / "maps.png"
    if renderer[-1] == "-o":
        subprocess.run([*renderer, str(png), str(svg)], check=True)
    else:
        subprocess.run([renderer[0], str(svg), str(png)], check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_escapes_names(tmp_path: Path) -> None:
    from sealkit._os.procfs import Vma
    from sealkit.host.mapsvg import render_svg

    odd = '/tmp/<a & "b">.so'
    regions = (
        audit.MappedRegion(
            Vma(0x1000, 0x3000, "r--p", 0, "fe:00", 7, odd, frozenset({"sl"})), "file"
        ),
        audit.MappedRegion(
            Vma(0x7F0000000000, 0x7F0000001000, "rw-p", 0, "00:00", 0, "", frozenset()), "anon"
        ),
    )
    text = render_svg(audit.ProcessMaps(1, "a<b>&c", regions))
    root = ET.fromstring(text)
    rects = [
        r for r in root.iter("{http://www.w3.org/2000/svg}rect") if "vma" in r.get("class", "")
    ]
    assert [r.get("data-path") for r in rects] == [odd, ""]
    assert [("sealed" in r.get("class", "")) for r in rects] == [True, False]
    assert "a<b>&c" in "".join(root.find("{http://www.w3.org/2000/svg}title").itertext())  # type: ignore[union-attr]


def test_classification_of_a_sealed_elf_object() -> None:
    with running([sys.executable, "-c", ELF_SEALER]) as (pid, done):
        report = audit.scan_host(pids=[pid])
    [proc] = report.processes
    got = {(m.start, m.end): m.kind for m in proc.sealed or ()}
    assert sorted(got) == sorted((a, b) for a, b, *_ in done)
    so = [d for d in done if d[4].endswith(".so")]
    so_path = so[0][4]
    layout = elf_file.load_layout(so_path)
    assert layout.relro is not None
    base = so[0][0] - layout.loads[0].vaddr // PAGE * PAGE
    relro = ((base + layout.relro.vaddr) // PAGE * PAGE,
             (base + layout.relro.vaddr + layout.relro.memsz) // PAGE * PAGE)  # fmt: skip
    for start, end, perms, _, path in done:
        kind = got[start, end]
        if path == "[vdso]":
            assert kind == "system"
        elif path == "[stack]":
            assert kind == "stack"
        elif "x" in perms:
            assert kind == "text"
        elif "w" in perms:
            assert kind == "data"
        elif (start, end) == relro:
            assert kind == "relro"
        else:
            assert kind == "rodata"
    assert sum(kind == "relro" for kind in got.values()) == 1


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the .bss test program")
def test_a_sealed_bss_is_data(tmp_path: Path) -> None:
    (tmp_path / "bss.c").write_text(BSS_C)
    exe = tmp_path / "bss"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(tmp_path / "bss.c")], check=True)
    with running([str(exe)]) as (pid, (lo, hi)):
        [proc] = audit.scan_host(pids=[pid]).processes
        maps = audit.process_maps(pid)
    assert [(m.start, m.end, m.kind) for m in proc.sealed or ()] == [(lo, hi, "data")]
    before = [r for r in maps.regions if r.vma.end <= lo]
    assert before[-1].kind == "data"  # the rest of the object's .bss, or its .data
    assert [r.kind for r in maps.regions if r.vma.sealed] == ["data"]


def test_filters_and_sealed_only(sealer: tuple[int, dict[str, list[int]]], datafile: str) -> None:
    pid, _ = sealer
    with running([sys.executable, "-c", PLAIN, "sk-plain"]) as (plain, _):
        code, out, _ = cli("audit", "--json", "--comm", "sk-*")
        doc = json.loads(out)
        assert {p["pid"] for p in doc["processes"]} == {pid, plain}
        assert doc["filters"]["comm"] == "sk-*"
        code, out, _ = cli("audit", "--json", "--comm", "sk-*", "--sealed-only")
        assert [p["pid"] for p in json.loads(out)["processes"]] == [pid]
        assert json.loads(out)["summary"]["seen"] == 2  # the summary counts what was audited
        code, out, _ = cli("audit", "--json", "--pid", str(plain), "--user", "root")
        [row] = json.loads(out)["processes"]
        assert (row["sealed_mappings"], row["sealed"], row["sealed_kinds"]) == (0, [], {})
        code, out, _ = cli("audit", "--json", "--pid", str(plain), "--user", "65534")
        assert json.loads(out)["processes"] == []
        code, out, _ = cli("audit", "--comm", "sk-*")
        assert code == 0
        lines = {line.split()[0]: line for line in out.splitlines() if line.strip()[:1].isdigit()}
        assert "not sealed" in lines[str(plain)]
        assert "file 1, anon 1" in lines[str(pid)]
        assert "2 processes seen, 1 with sealed memory" in " ".join(out.split())
    code, out, err = cli("audit", "--user", "no-such-user-here")
    assert code == 2 and err.count("\n") == 1


def test_requirements(sealer: tuple[int, dict[str, list[int]]]) -> None:
    pid, _ = sealer
    with running([sys.executable, "-c", PLAIN, "sk-plain"]) as (plain, _):
        code, out, err = cli(
            "audit", "--json", "--comm", "sk-sealer", "--require", "sealed:sk-sealer"
        )
        assert (code, err) == (0, "")
        assert json.loads(out)["requirements"] == [
            {"requirement": "sealed:sk-sealer", "met": True, "reason": ""}
        ]
        code, _, err = cli("audit", "--comm", "sk-*", "--require", "sealed:sk-*:anon,file")
        assert code == 1
        assert err == (
            "sealkit audit: requirement sealed:sk-*:anon,file not met: 1 of 2 processes named "
            f"'sk-*' without sealed anon+file (pids {plain})\n"
        )
        code, _, err = cli("audit", "--pid", str(pid), "--require", "sealed:*:text")
        assert code == 1 and "without sealed text" in err
        code, _, err = cli("audit", "--pid", str(pid), "--require", "sealed:nginx")
        assert code == 1 and err.endswith("no process named 'nginx' was audited\n")
        code, _, err = cli("audit", "--pid", str(pid), "--require", "system")
        assert code == 1 and f"[vdso] not sealed (or not readable) in pids {pid}" in err
        code, _, err = cli("audit", "--pid", str(pid), "--require", "complete")
        assert (code, err) == (0, "")
        for bad in ("sealed:", "sealed:x:bogus", "everything"):
            code, out, err = cli("audit", "--pid", str(pid), "--require", bad)
            assert code == 2 and out == "" and err.count("\n") == 1, bad


def test_denied_is_never_not_sealed(sealer: tuple[int, dict[str, list[int]]]) -> None:
    """As nobody, root's processes are DENIED: listed, counted, never "not sealed"."""
    pid, _ = sealer
    me = os.getpid()
    # Warm every lazy import as root: nobody may not read this interpreter's
    # standard library (it lives under /root here).
    cli("audit", "--pid", str(pid))
    cli("audit", "--json", "--pid", str(pid))

    def as_nobody() -> tuple[tuple[int, str, str], tuple[int, str, str], tuple[int, str, str]]:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        return (
            cli("audit", "--json", "--pid", str(pid), "--pid", str(me), "--pid", str(os.getpid())),
            cli("audit", "--pid", str(pid), "--pid", str(os.getpid())),
            cli("audit", "--pid", str(pid), "--require", "complete", "--require", "sealed:sk-*"),
        )

    as_json, table, required = run_in_child(as_nobody)
    doc = json.loads(as_json[1])
    jsonschema.validate(doc, AUDIT_SCHEMA)
    rows = {p["pid"]: p for p in doc["processes"]}
    for denied in (pid, me):
        assert rows[denied]["status"] == "denied"
        assert rows[denied]["mappings"] is None and rows[denied]["sealed"] is None
        assert rows[denied]["user"] == "root"
    assert rows[pid]["command"] == "sk-sealer"
    own = [p for p in rows.values() if p["status"] == "ok"]
    assert len(own) == 1 and own[0]["user"] == "nobody"  # its own process stays readable
    assert doc["summary"]["denied"] == 2 and doc["summary"]["sealed"] == 0
    code, out, _ = table
    line = next(line for line in out.splitlines() if line.split()[:1] == [str(pid)])
    assert "DENIED" in line and "not sealed" not in line
    code, _, err = required
    assert code == 1
    assert f"requirement complete not met: 1 process could not be read (pids {pid})" in err
    assert f"requirement sealed:sk-* not met: 1 could not be read (pids {pid})" in err


def test_prometheus_output(sealer: tuple[int, dict[str, list[int]]]) -> None:
    pid, _ = sealer
    with running([sys.executable, "-c", PLAIN, 'sk"q\\x\ny']) as (odd, _):
        code, out, err = cli("audit", "--format", "prometheus", "--pid", str(pid), "--pid",
                             str(odd), "--host", 'h"1', "--require", "sealed:sk-sealer")  # fmt: skip
        assert (code, err) == (0, "")
    samples = parse_prometheus(out)
    host = 'h\\"1'
    assert samples[f'sealkit_audit_processes{{host="{host}",state="seen"}}'] == 2
    assert samples[f'sealkit_audit_processes{{host="{host}",state="sealed"}}'] == 1
    key = f'host="{host}",command="sk-sealer"'
    assert samples[f"sealkit_audit_command_sealed_processes{{{key}}}"] == 1
    assert samples[f'sealkit_audit_command_sealed_bytes{{{key},kind="file"}}'] == 2 * PAGE
    assert samples[f'sealkit_audit_command_sealed_mappings{{{key},kind="anon"}}'] == 1
    # the label text sk"q\\x\ny (a backslash doubled, the newline as \n), in exposition escapes
    escaped = f'host="{host}",command="sk\\"q\\\\\\\\x\\\\ny"'
    assert samples[f"sealkit_audit_command_sealed_processes{{{escaped}}}"] == 0
    assert (
        samples[f'sealkit_audit_requirement_met{{host="{host}",requirement="sealed:sk-sealer"}}']
        == 1
    )
    assert odd != pid


def test_names_that_look_alike_get_a_series_each(tmp_path: Path) -> None:
    """A command named with a control byte and one named with the four
    characters of its escape: the old rule wrote both sk-a\\x01, and
    Prometheus got the same series twice."""
    names = [b"sk-a\x01", b"sk-a\\x01"]
    children = [running([sys.executable, "-c", NAMED, n.decode("latin-1")]) for n in names]
    with children[0] as (one, _), children[1] as (other, _):
        code_, out, err = cli("audit", "--format", "prometheus", "--pid", str(one), "--pid",
                              str(other))  # fmt: skip
        assert (code_, err) == (0, "")
        doc = json.loads(cli("audit", "--json", "--pid", str(one), "--pid", str(other))[1])
    samples = parse_prometheus(out)  # strict: a duplicate series fails here
    host = os.uname().nodename
    assert samples[f'sealkit_audit_command_processes{{host="{host}",command="sk-a\\\\x01"}}'] == 1
    assert (
        samples[f'sealkit_audit_command_processes{{host="{host}",command="sk-a\\\\\\\\x01"}}'] == 1
    )
    assert sorted(p["command"] for p in doc["processes"]) == ["sk-a\\\\x01", "sk-a\\x01"]


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? (-?[0-9.e+]+)$'
)


def parse_prometheus(text: str) -> dict[str, float]:
    """Parse the text exposition format strictly: every sample's metric has
    HELP and TYPE lines first, each metric's lines are contiguous, label
    values use only the three escapes; returns {"name{labels}": value}."""
    assert text.endswith("\n")
    helped: set[str] = set()
    typed: dict[str, str] = {}
    finished: set[str] = set()
    current = None
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, f"two HELP lines for {name}"
            helped.add(name)
            if current is not None:
                finished.add(current)
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped and kind == "gauge"
            typed[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name = m.group(1)
            assert name == current and name in typed and name not in finished, line
            key = name + (m.group(2) or "")
            assert key not in samples, f"duplicate series {key}"
            samples[key] = float(m.group(3))
    return samples


def test_prometheus_escaping_without_a_kernel() -> None:
    proc = audit.ProcessAudit(7, 'a"b\\c\nd', 0, "root", "ok", 3, (
        audit.SealedMapping(0x1000, 0x2000, "r--p", "relro", "/lib/x.so"),
    ))  # fmt: skip
    report = audit.HostAudit("h\n", "6.18", 0.0, 0.5, (proc,), vanished=1, kernel_threads=2)
    samples = parse_prometheus(audit.to_prometheus(report))
    # label texts h\n and a"b\\c\nd (what the table and JSON show), in exposition escapes
    labels = 'host="h\\\\n",command="a\\"b\\\\\\\\c\\\\nd"'
    assert samples[f'sealkit_audit_command_sealed_bytes{{{labels},kind="relro"}}'] == 4096
    assert samples['sealkit_audit_processes{host="h\\\\n",state="vanished"}'] == 1


def test_audit_to_a_file_is_atomic(
    sealer: tuple[int, dict[str, list[int]]], tmp_path: Path
) -> None:
    pid, _ = sealer
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "sealkit.prom"
    target.write_text("old\n")
    code, out, err = cli("audit", "--format", "prometheus", "--pid", str(pid), "-o", str(target))
    assert (code, out, err) == (0, "", "")
    assert "sealkit_audit_processes" in target.read_text()
    assert os.listdir(tmp_path / "out") == ["sealkit.prom"]  # no temporary file left
    # A directory is an output that cannot be written: exit 4, as for every
    # other unwritable output (docs/cli.md), one line.
    code, _, err = cli("audit", "--pid", str(pid), "-o", str(tmp_path / "out"))
    assert code == 4 and "it is a directory" in err and len(err.strip().splitlines()) == 1


def test_maps_errors_are_one_line(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    for args, code in ((["maps", "0"], 2), (["maps", "nope"], 2), (["maps", str(2**22 + 1)], 1)):
        done = sealkit_cli(*args)
        assert done.returncode == code, args
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    done = sealkit_cli("maps", "self", "--json")
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, MAPS_SCHEMA)
    assert doc["command"].startswith("python") and doc["pid"] != os.getpid()
    assert {"text", "relro", "heap", "stack"} <= {r["kind"] for r in doc["regions"]}


def test_docs_python_example_runs(
    python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    code = doc.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert "processes seen" in done.stdout and "sealkit_audit_processes" in done.stdout
    assert done.stdout.rstrip().endswith("no")


# --- a hostile process: names and files chosen to break the output -----------------

HOSTILE = r"""
import json, os, shutil, struct, sys
import sealkit
d = sys.argv[1]
names = [b"ctl\x01\x07x", b"esc\x1b[31mred", b"bad\xff\xfeutf", b"trail  ", b"sep\xe2\x80\xa8x",
         b"q\"<&>\\z", b"rtl\xe2\x80\xaeevil"]
mapped = []
for name in names:
    path = os.path.join(os.fsencode(d), name)
    with open(path, "wb") as fh:
        fh.write(b"x" * 4096)
    mapped.append(sealkit.map_file(path))  # sealed, read-only, shared
# an ELF whose program header table is 2**64 - 1 bytes into the file
elf = os.path.join(d, "badphoff.elf")
shutil.copyfile("/bin/true", elf)
with open(elf, "r+b") as fh:
    fh.seek(0x20)
    fh.write(struct.pack("<Q", (1 << 64) - 1))
mapped.append(sealkit.map_file(elf, length=4096))
with open("/proc/self/comm", "wb") as fh:
    fh.write(b'c"<&>\\\n\x1b\xff')
print(json.dumps([[m.address, m.address + m.size] for m in mapped]), flush=True)
sys.stdin.read()
"""


def test_hostile_names_and_files_cannot_break_the_output(tmp_path: Path) -> None:
    """Control characters, terminal escapes, bidi overrides, bytes that are
    not UTF-8 and a malformed sealed ELF: every output stays valid, one line
    per record, and exact where the format allows (JSON)."""
    with running([sys.executable, "-c", HOSTILE, str(tmp_path)]) as (pid, ranges):
        code, table, err = _run(["audit", "--pid", str(pid)])
        assert code == 0, err
        assert "\x1b" not in table and "\u202e" not in table
        # the one escaping rule, the same label text in every output:
        # c"<&> \\ \n \x1b \xff (backslash, newline, escape, a byte not UTF-8)
        shown = 'c"<&>\\\\\\n\\x1b\\xff'
        assert label('c"<&>\\\n\x1b\udcff') == shown
        row = [line for line in table.splitlines() if line.strip().startswith(str(pid))]
        assert len(row) == 1 and shown in row[0], table

        code, text, err = _run(["audit", "--pid", str(pid), "--json"])
        assert code == 0, err
        (proc,) = json.loads(text)["processes"]
        assert proc["sealed_mappings"] == len(ranges)
        assert proc["command"] == shown  # no lone surrogate in the JSON text
        assert "\\ud" not in text
        assert unlabel(proc["command"]) == 'c"<&>\\\n\x1b\udcff'  # exact, once unescaped

        code, text, err = _run(["audit", "--pid", str(pid), "--format", "prometheus"])
        assert code == 0, err
        samples = parse_prometheus(text)
        exposition = shown.replace("\\", "\\\\").replace('"', '\\"')
        assert any(f'command="{exposition}"' in key for key in samples), text

        out = tmp_path / "table.txt"
        assert _run(["audit", "--pid", str(pid), "-o", str(out)])[0] == 0
        assert "\\x1b" in out.read_text(encoding="utf-8")

        code, text, err = _run(["maps", str(pid), "--json"])
        assert code == 0, err
        paths = {r["path"] for r in json.loads(text)["regions"]}
        assert str(tmp_path / "trail  ") in paths  # trailing spaces are the name's
        # the one escaping rule: valid UTF-8 (no lone surrogate), and exact once unescaped
        assert f"{tmp_path}/bad\\xff\\xfeutf" in paths
        assert os.fsdecode(bytes(tmp_path) + b"/bad\xff\xfeutf") in {unlabel(p) for p in paths}

        svg = tmp_path / "m.svg"
        code, _, err = _run(["maps", str(pid), "--svg", str(svg)])
        assert code == 0, err
        ET.parse(svg)  # well-formed XML
        assert "\\x1b[31mred" in svg.read_text(encoding="utf-8")


def _run(args: list[str]) -> tuple[int, str, str]:
    """The command line in a fresh interpreter, its output decoded strictly
    as UTF-8 (an undecodable byte in the output fails the test)."""
    done = subprocess.run(
        [sys.executable, "-m", "sealkit", *args], capture_output=True, env=python_env(),
        timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


def test_output_to_devices_and_links_keeps_them(tmp_path: Path) -> None:
    """``-o`` renames a temporary file over a regular file, but never over a
    device node or a symbolic link: those are written through."""
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    assert _run(["audit", "--pid", str(os.getpid()), "--json", "-o", str(null)])[0] == 0
    assert stat.S_ISCHR(null.lstat().st_mode)
    real = tmp_path / "real.prom"
    real.write_text("old\n")
    link = tmp_path / "link.prom"
    link.symlink_to(real)
    args = ["audit", "--pid", str(os.getpid()), "--format", "prometheus", "-o", str(link)]
    assert _run(args)[0] == 0
    assert link.is_symlink() and "sealkit_audit_processes" in real.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--pid", "99999999999999999999"],
        ["audit", "--pid", "4294967296"],
        ["audit", "--user", "99999999999999999999"],
        ["maps", "self", "--svg", ""],
    ],
    ids=["huge pid", "pid past 32 bits", "huge uid", "empty svg name"],
)
def test_bad_values_are_usage_errors(args: list[str]) -> None:
    code, _, err = _run(args)
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)


def test_tables_end_quietly_when_the_reader_goes_away() -> None:
    """``sealkit maps self | head -1``: the reader leaves, sealkit exits 0
    without a word, as it does for --json (rich alone would exit 1)."""
    code = (
        f"{shlex.quote(sys.executable)} -m sealkit maps self | head -1 >/dev/null; "
        'echo "${PIPESTATUS[0]}"'
    )
    done = subprocess.run(
        ["bash", "-c", code], capture_output=True, text=True, env=python_env(), timeout=60,
        check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "0" and done.stderr == "", done


LEADER_GONE_C = r"""
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#define PAGE 4096UL
static uintptr_t stack_page;
static void deep(int n) {  /* grow the main stack well below its start */
    volatile char frame[16384];
    frame[0] = (char)n;
    if (n) deep(n - 1);
    else stack_page = ((uintptr_t)frame & ~(PAGE - 1)) + PAGE;  /* inside the frame */
}
static void *wait_for_stdin(void *arg) {
    char c;
    (void)arg;
    while (read(0, &c, 1) > 0) {}
    _exit(0);
}
static void seal(uintptr_t a, unsigned long n) {
    if (syscall(462, a, n, 0) != 0) { perror("mseal"); _exit(1); }
}
int main(void) {
    deep(16);
    seal(stack_page, PAGE);                          /* a piece of the main stack */
    int fd = open("/proc/self/exe", O_RDONLY);
    char *elf = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);   /* the ELF as data */
    char *anon = mmap(NULL, 4 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    seal((uintptr_t)elf, PAGE);
    seal((uintptr_t)anon, 4 * PAGE);
    printf("[[%lu, %lu], [%lu, %lu], [%lu, %lu]]\n",
           (unsigned long)stack_page, (unsigned long)(stack_page + PAGE),
           (unsigned long)elf, (unsigned long)(elf + PAGE),
           (unsigned long)anon, (unsigned long)(anon + 4 * PAGE));
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, wait_for_stdin, NULL);
    pthread_exit(NULL);  /* the main thread goes: a zombie leader, the process lives on */
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the test program")
def test_a_process_whose_main_thread_exited_is_audited(tmp_path: Path) -> None:
    """Its /proc/PID/smaps is empty, the live thread's is not: the sweep must
    not call it vanished (any process could hide that way). Also classifies
    a sealed piece of the main stack that lost the [stack] name as stack, and
    the program's own ELF mmapped as data as file, not rodata."""
    (tmp_path / "leader.c").write_text(LEADER_GONE_C)
    exe = tmp_path / "leader"
    subprocess.run(["gcc", "-O0", "-pthread", "-o", str(exe), str(tmp_path / "leader.c")],
                   check=True)  # fmt: skip
    with running([str(exe)]) as (pid, (stack, elfdata, anon)):
        for _ in range(100):  # the main thread's exit is asynchronous
            if ProcessDir(pid).status().state == "Z":
                break
            time.sleep(0.01)
        report = audit.scan_host(pids=[pid])
        maps = audit.process_maps(pid)
    assert report.vanished == 0
    [proc] = report.processes
    got = sorted((m.start, m.end, m.kind) for m in proc.sealed or ())
    assert got == sorted([(*stack, "stack"), (*elfdata, "file"), (*anon, "anon")]), got
    assert sorted((r.vma.start, r.vma.end, r.kind) for r in maps.regions if r.vma.sealed) == got
