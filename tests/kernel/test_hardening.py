"""``sealkit.harden()`` on the real kernel, each case in a fresh interpreter.

Every child hardens itself (seals are irreversible, so never in the test
runner), then tries what sealing must stop and reports, as JSON, what the
kernel answered. Targets are found from a second source, independent of the
code under test: program headers read from the file on disk by pyelftools,
located through ``/proc/self/maps``. Seal bits are read back from
``/proc/self/smaps`` (``sealkit maps`` has not landed yet; it reads the same
``VmFlags: sl``).
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.kernel

RunPython = Callable[..., subprocess.CompletedProcess[str]]

# Helpers every child starts with.
PRELUDE = textwrap.dedent(
    """
    import ctypes, json, os, sys
    import sealkit
    from sealkit._os import procfs, syscalls as sc
    from sealkit.errors import SealedError
    from elftools.elf.elffile import ELFFile

    PAGE = os.sysconf("SC_PAGE_SIZE")
    down = lambda v: v & ~(PAGE - 1)
    up = lambda v: (v + PAGE - 1) & ~(PAGE - 1)
    RW, RX, RWX, R = 3, 5, 7, 1
    FIXED_ANON = 0x10 | 0x20 | 0x02  # MAP_FIXED | MAP_ANONYMOUS | MAP_PRIVATE

    def path_of(part):
        paths = {v.path for v in procfs.read_maps() if part in v.path}
        assert len(paths) == 1, (part, paths)
        return paths.pop()

    def segments(path):
        '''Program headers from the file on disk, placed where /proc maps the file.'''
        base = min(v.start for v in procfs.read_maps() if v.path == path and v.offset == 0)
        with open(path, "rb") as fh:
            phdrs = [(s["p_type"], s["p_flags"], s["p_vaddr"], s["p_memsz"])
                     for s in ELFFile(fh).iter_segments()]
        out = {}
        loads = [p for p in phdrs if p[0] == "PT_LOAD"]
        text = [p for p in loads if p[1] & 1]
        rodata = [p for p in loads if p[1] == 4 and p[2] != 0]  # not the headers' segment
        data = [p for p in loads if p[1] & 2]
        relro = [p for p in phdrs if p[0] == "PT_GNU_RELRO"]
        for name, seg, round_end in (("text", text, up), ("rodata", rodata, up),
                                     ("data", data, up), ("relro", relro, down)):
            if seg:
                _, _, vaddr, memsz = seg[0]
                out[name] = (base + down(vaddr), base + round_end(vaddr + memsz))
        return out

    def sealed(lo, hi):
        '''True when every VMA overlapping [lo, hi) shows VmFlags sl.'''
        vmas = [v for v in procfs.read_smaps() if v.start < hi and v.end > lo]
        return bool(vmas) and all(v.sealed for v in vmas)

    def attempt(fn, *args):
        try:
            fn(*args)
        except SealedError:
            return "refused"
        except OSError as exc:
            return f"error {exc}"
        return "done"

    def first_sealed_vmas():
        return sum(1 for v in procfs.read_smaps() if v.sealed)
    """
)


def child(
    python: RunPython, body: str, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> Any:
    """Run PRELUDE + body in a fresh interpreter; return the JSON it printed last."""
    proc = python(PRELUDE + textwrap.dedent(body), *args, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sealed_code_refuses_what_sealing_must_stop(python: RunPython) -> None:
    result = child(
        python,
        """
        libc, libpy, exe = path_of("libc.so"), path_of("libpython"), os.readlink("/proc/self/exe")
        c, p, e = segments(libc), segments(libpy), segments(exe)
        out = {"before": first_sealed_vmas()}
        # Controls before hardening: a same-protection mprotect is harmless
        # and allowed; after hardening the same call is refused (seal only).
        out["control text"] = attempt(sc.mprotect, c["text"][0], c["text"][1] - c["text"][0], RX)
        out["control relro"] = attempt(sc.mprotect, c["relro"][0], c["relro"][1] - c["relro"][0], R)
        report = sealkit.harden()
        out["newly"] = report.newly_sealed_bytes
        lo, hi = c["rodata"]
        before = ctypes.string_at(lo, 64)
        out["libc text +w"] = attempt(sc.mprotect, c["text"][0], c["text"][1] - c["text"][0], RWX)
        out["libc text noop"] = attempt(sc.mprotect, c["text"][0], c["text"][1] - c["text"][0], RX)
        out["unmap libpython text"] = attempt(sc.munmap, p["text"][0], p["text"][1] - p["text"][0])
        out["unmap exe text"] = attempt(sc.munmap, e["text"][0], e["text"][1] - e["text"][0])
        out["unmap libc whole"] = attempt(sc.munmap, c["text"][0], c["data"][1] - c["text"][0])
        out["map over libc rodata"] = attempt(sc.mmap, lo, hi - lo, R, FIXED_ANON)
        out["rodata intact"] = ctypes.string_at(lo, 64) == before
        out["libc relro +w"] = attempt(sc.mprotect, c["relro"][0], c["relro"][1] - c["relro"][0], RW)
        out["libpython relro +w"] = attempt(sc.mprotect, p["relro"][0], p["relro"][1] - p["relro"][0], RW)
        out["sealed in smaps"] = {
            f"{name} {kind}": sealed(*rng)
            for name, segs in (("libc", c), ("libpython", p), ("exe", e))
            for kind, rng in segs.items()
        }
        out["perms after"] = sorted({v.perms for v in procfs.read_maps() if v.path == libc})
        out["still works"] = ctypes.CDLL(None).strlen(b"sealed") + len(json.dumps(out))
        print(json.dumps(out))
        """,
    )
    assert result["before"] == 0  # no seal in a fresh process: every seal below is ours
    assert result["control text"] == result["control relro"] == "done"
    assert result["newly"] > 1 << 20
    for attack in (
        "libc text +w",
        "libc text noop",
        "unmap libpython text",
        "unmap exe text",
        "unmap libc whole",
        "map over libc rodata",
        "libc relro +w",
        "libpython relro +w",
    ):
        assert result[attack] == "refused", (attack, result[attack])
    assert result["rodata intact"] is True
    sealed_now = result["sealed in smaps"]
    assert {k for k, v in sealed_now.items() if v} == {
        k for k in sealed_now if k.split()[1] != "data"
    }, sealed_now  # level "code": text, rodata, RELRO; writable data left alone
    assert result["perms after"] == ["r--p", "r-xp", "rw-p"]
    assert result["still works"] > 6


def test_level_all_also_seals_data_bss_and_gaps(python: RunPython, libs: dict[str, str]) -> None:
    result = child(
        python,
        """
        gap = ctypes.CDLL(sys.argv[1])
        libc, g = path_of("libc.so"), path_of("gap.so")
        c = segments(libc)
        holes = [(v.start, v.end) for v in procfs.read_maps() if v.path == g and v.perms == "---p"]
        bss = next(v for v in procfs.read_maps() if v.start == c["data"][1] - PAGE or
                   (v.start < c["data"][1] <= v.end and v.path == ""))
        out = {"holes": len(holes)}
        # Level "code" leaves holes open: mapping into one is allowed (control).
        sealkit.harden("code")
        h0, h1 = holes[0]
        out["map into hole, code"] = attempt(sc.mmap, h0, PAGE, 0, FIXED_ANON)
        report = sealkit.harden("all")
        kinds = {r.kind for o in report.objects for r in o.sealed if not r.already_sealed}
        out["new kinds"] = sorted(kinds)
        out["map into hole, all"] = attempt(sc.mmap, holes[1][0], PAGE, 0, FIXED_ANON)
        out["unmap libc data"] = attempt(sc.munmap, c["data"][0], PAGE)
        out["libc data noop"] = attempt(sc.mprotect, c["data"][0], PAGE, RW)
        out["sealed libc data+bss"] = sealed(c["data"][0], c["data"][1])
        out["gap.so all sealed"] = all(v.sealed for v in procfs.read_smaps() if v.path == g)
        out["gap.so still works"] = gap.bump(2)
        print(json.dumps(out))
        """,
        libs["gap"],
    )
    assert result["holes"] >= 2  # the library really has PROT_NONE gaps
    assert result["map into hole, code"] == "done"
    assert set(result["new kinds"]) == {"data", "bss", "gap"}
    assert result["map into hole, all"] == "refused"
    assert result["unmap libc data"] == result["libc data noop"] == "refused"
    assert result["sealed libc data+bss"] is result["gap.so all sealed"] is True
    assert result["gap.so still works"] == 1 + 2 + ord("h")  # counter + x + msg[0]


def test_dry_run_changes_nothing(python: RunPython) -> None:
    result = child(
        python,
        """
        from importlib.machinery import ExtensionFileLoader
        hooks = (ExtensionFileLoader.create_module, ctypes.CDLL.__init__)
        def layout():
            # Everything smaps says except the counters (Rss, Pss... change as
            # pages are touched, by any code): ranges, perms, offsets, files, VmFlags.
            # The end of [heap] is malloc's: brk moves it when any code allocates.
            return [(v.start, None if v.path == "[heap]" else v.end, v.perms, v.offset,
                     v.dev, v.inode, v.path, sorted(v.vmflags)) for v in procfs.read_smaps()]
        sealkit.harden(dry_run=True)  # warm up: lazy imports, allocator arenas
        layout(); layout()
        before = layout()
        report = sealkit.harden("all", system=True, imports=True, dry_run=True)
        after = layout()
        print(json.dumps({
            "same": before == after,
            "diff": [x for x in before if x not in after] + [x for x in after if x not in before],
            "sealed vmas": sum("sl" in x[-1] for x in after),
            "would seal": report.newly_sealed_bytes,
            "kinds": sorted({r.kind for o in report.objects for r in o.sealed}),
            "hooks untouched": hooks == (ExtensionFileLoader.create_module, ctypes.CDLL.__init__),
            "dry": report.dry_run,
        }))
        """,
    )
    assert result["same"] is True, result["diff"]
    assert result["sealed vmas"] == 0
    assert result["would seal"] > 1 << 20
    assert {"text", "rodata", "relro", "data", "bss", "system"} <= set(result["kinds"])
    assert result["hooks untouched"] is True and result["dry"] is True


def test_harden_is_idempotent(python: RunPython) -> None:
    result = child(
        python,
        """
        # Every file mapping, system mapping and sealed VMA (anonymous unsealed
        # memory comes and goes with Python's allocator between the calls).
        def layout():
            return [(v.start, v.end, v.perms, sorted(v.vmflags)) for v in procfs.read_smaps()
                    if v.inode or v.sealed or v.path.startswith("[v")]
        first = sealkit.harden()
        snap = layout()
        second = sealkit.harden()
        again = layout()
        third = sealkit.harden("all")
        ranges = lambda r: [(x.start, x.end, x.kind) for o in r.objects for x in o.sealed]
        print(json.dumps({
            "first new": first.newly_sealed_bytes,
            "second new": second.newly_sealed_bytes,
            "second all already": all(x.already_sealed for o in second.objects for x in o.sealed),
            "same ranges": ranges(first) == ranges(second),
            "same smaps": snap == again,
            "smaps diff": [x for x in snap if x not in again] + [x for x in again if x not in snap],
            "third new kinds": sorted({x.kind for o in third.objects for x in o.sealed
                                        if not x.already_sealed}),
            "third keeps code": set(ranges(first)) <= set(ranges(third)),
        }))
        """,
    )
    assert result["first new"] > 0 and result["second new"] == 0
    assert result["second all already"] is True
    assert result["same ranges"] is True
    assert result["same smaps"] is True, result["smaps diff"]
    assert (
        set(result["third new kinds"]) <= {"data", "bss", "gap"}
        and "data" in result["third new kinds"]
    )
    assert result["third keeps code"] is True


def test_system_mappings_only_when_asked(python: RunPython) -> None:
    result = child(
        python,
        """
        import time
        vdso = next(v for v in procfs.read_maps() if v.path == "[vdso]")
        sealkit.harden("all")
        out = {"vdso sealed without system": sealed(vdso.start, vdso.end)}
        report = sealkit.harden(system=True)
        from sealkit.sealing.hardening import SYSTEM_MAPPINGS
        out["system sealed"] = {o.path: bool(o.sealed) for o in report.objects if o.path.startswith("[")}
        out["smaps"] = {v.path: bool(v.sealed) for v in procfs.read_smaps()
                        if v.path in SYSTEM_MAPPINGS}
        out["unmap vdso"] = attempt(sc.munmap, vdso.start, vdso.end - vdso.start)
        out["move vdso"] = attempt(sc.mremap, vdso.start, vdso.end - vdso.start, vdso.end - vdso.start, 3, 0x10000000)
        t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        time.sleep(0.01)
        out["clock works"] = time.clock_gettime(time.CLOCK_MONOTONIC) - t0 >= 0.01
        print(json.dumps(out))
        """,
    )
    assert result["vdso sealed without system"] is False
    assert set(result["system sealed"]) >= {"[vdso]", "[vvar]"} and all(
        result["system sealed"].values()
    )
    assert all(result["smaps"].values()), result["smaps"]
    assert result["unmap vdso"] == result["move vdso"] == "refused"
    assert result["clock works"] is True


HOOK_BODY = """
import importlib, importlib.machinery, warnings
warnings.simplefilter("error")
sys.path.insert(0, sys.argv[2])
if sys.argv[1] == "hooked":
    sealkit.harden(imports=True)
from sealkit.sealing.hardening import hook_reports
out = {}
assert "_bz2" not in sys.modules and "_lzma" not in sys.modules
import _bz2
out["loader type"] = type(_bz2.__spec__.loader).__name__
out["loader is module loader"] = _bz2.__loader__ is _bz2.__spec__.loader
out["reload same"] = importlib.reload(_bz2) is _bz2
for name in ("nonexistent_mod_xyz", "brokenext", "noinit"):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
lib = ctypes.CDLL(os.path.join(sys.argv[2], "plain.so"))
out["ctypes call"] = lib.bump(1)
import lzma
out["lzma"] = lzma.decompress(lzma.compress(b"x" * 1000)) == b"x" * 1000
def file_sealed(part):
    vmas = [v for v in procfs.read_smaps() if part in v.path]
    return sorted({(v.perms, bool(v.sealed)) for v in vmas})
out["sealed"] = {p: file_sealed(p) for p in ("_bz2.cpython", "libbz2", "_lzma.cpython",
                                             "liblzma", "plain.so", "noinit")}
out["triggers"] = [r.trigger for r in hook_reports()]
print(json.dumps(out))
"""


def test_imports_and_ctypes_loads_are_sealed_as_they_load(
    python: RunPython, libs: dict[str, str], tmp_path: Path
) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"
    (tmp_path / f"brokenext{suffix}").write_bytes(b"not an ELF file\n")
    shutil.copy(libs["plain"], tmp_path / f"noinit{suffix}")
    shutil.copy(libs["plain"], tmp_path / "plain.so")
    plain = child(python, HOOK_BODY, "plain", str(tmp_path))
    hooked = child(python, HOOK_BODY, "hooked", str(tmp_path))
    # Import semantics are untouched: same loaders, reload, same errors word for word.
    for key in ("loader type", "loader is module loader", "reload same", "nonexistent_mod_xyz",
                "brokenext", "noinit", "ctypes call", "lzma"):  # fmt: skip
        assert hooked[key] == plain[key], key
    assert hooked["loader type"] == "ExtensionFileLoader" and hooked["reload same"] is True
    assert "No module named 'nonexistent_mod_xyz'" in hooked["nonexistent_mod_xyz"]
    assert "brokenext" in hooked["brokenext"] and "PyInit_noinit" in hooked["noinit"]
    # Nothing sealed without the hook; with it, every new object, dependencies
    # included, at level "code" (text and read-only data, not rw data).
    assert not any(s for states in plain["sealed"].values() for _, s in states), plain["sealed"]
    for part, states in hooked["sealed"].items():
        assert states, part
        assert all(s == (perms != "rw-p") for perms, s in states), (part, states)
    # The extension without PyInit stays loaded (CPython never dlcloses): sealed too.
    assert any(t == "import noinit" for t in hooked["triggers"])
    assert "import _bz2" in hooked["triggers"] and "import _lzma" in hooked["triggers"]
    assert any(t.startswith("ctypes ") and t.endswith("plain.so") for t in hooked["triggers"])


def test_demanding_workload_runs_the_same_after_hardening(python: RunPython) -> None:
    script = str(Path(__file__).with_name("hardening_workload.py"))
    runs = {}
    for mode in ("control", "hardened"):
        proc = subprocess.run(
            [sys.executable, script, mode], capture_output=True, text=True, timeout=300,
            env=python_env(), check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (mode, proc.stderr[-3000:])
        assert proc.stderr == "", (mode, proc.stderr[-3000:])
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    control, hardened = runs["control"], runs["hardened"]
    assert control["results"] == hardened["results"]
    assert control["modules"] == hardened["modules"] and len(hardened["modules"]) >= 100
    assert control["sealed vmas"] == 0
    later = hardened["imported later"]
    # (mmap and _ctypes are not here: `import sealkit` loads them, so harden() seals them.)
    assert {"_ssl", "_sqlite3", "_decimal", "_hashlib", "zlib", "_json", "select",
            "array", "math", "_lzma", "_bz2"} <= set(later), later  # fmt: skip
    assert hardened["unsealed later extensions"] == {}, hardened["unsealed later extensions"]
    assert hardened["hook sweeps"] >= len(later) // 2


def test_dlclose_of_a_sealed_library_unloads_nothing_it_stays_pinned(
    python: RunPython, libs: dict[str, str]
) -> None:
    # harden pins what it seals (RTLD_NODELETE): dlclose drops a reference and
    # unloads nothing, and loading the library again returns the same copy,
    # its data intact. (Unpinned, glibc would forget the library while its
    # sealed mappings stayed, and map a fresh copy on the next load.)
    result = child(
        python,
        """
        import _ctypes
        from sealkit.sealing.hardening import pinned_objects
        lib = ctypes.CDLL(sys.argv[1])
        lib.bump(1)
        sealkit.harden()
        starts = lambda: sorted({v.start for v in procfs.read_maps() if v.path == sys.argv[1]})
        bases = lambda: [o.addr for o in sc.loaded_objects() if o.name == sys.argv[1]]
        before, old_base = starts(), bases()
        _ctypes.dlclose(lib._handle)
        after_close, closed_bases = starts(), bases()
        again = ctypes.CDLL(sys.argv[1])
        print(json.dumps({
            "pinned": sys.argv[1] in pinned_objects(),
            "mappings kept": after_close == before == starts(),
            "still loaded": closed_bases == old_base == bases() and len(old_base) == 1,
            "same data": again.bump(1),
        }))
        """,
        libs["plain"],
    )
    assert result == {"pinned": True, "mappings kept": True, "still loaded": True,
                      "same data": 2 + 1 + ord("h")}  # fmt: skip


def test_dlopen_of_an_execstack_library_fails_after_hardening(
    python: RunPython, libs: dict[str, str]
) -> None:
    # glibc (< 2.41) makes the stack executable for such a library, first
    # mprotecting __stack_prot inside ld.so's RELRO: sealed, so dlopen fails.
    body = """
        if sys.argv[2] == "harden":
            sealkit.harden()
        try:
            ctypes.CDLL(sys.argv[1])
            out = "loaded"
        except OSError as exc:
            out = str(exc)
        print(json.dumps(out))
    """
    assert child(python, body, libs["execstack"], "control") == "loaded"
    hardened = child(python, body, libs["execstack"], "harden")
    assert "cannot change memory protections" in hardened


def test_what_sealing_does_not_stop(python: RunPython) -> None:
    # Documented limits: /proc/self/mem writes (FOLL_FORCE) still land on
    # sealed read-only pages, and MADV_DONTNEED on a sealed file-backed RELRO
    # page is allowed and reverts it to the bytes on disk (the relocations are
    # lost). The child exits with os._exit: the executable's RELRO is unusable.
    result = child(
        python,
        """
        exe = os.readlink("/proc/self/exe")
        lo, hi = segments(exe)["relro"]
        libc_ro = segments(path_of("libc.so"))["rodata"][0]
        sealkit.harden()
        out = {"relro sealed": sealed(lo, hi)}
        original = ctypes.string_at(libc_ro, 16)
        fd = os.open("/proc/self/mem", os.O_RDWR)
        out["mem write"] = os.pwrite(fd, original, libc_ro)  # same bytes: harmless
        os.close(fd)
        relocated = ctypes.string_at(lo, hi - lo)
        out["dontneed"] = attempt(sc.madvise, lo, hi - lo, 4)
        reverted = ctypes.string_at(lo, hi - lo)
        base = min(v.start for v in procfs.read_maps() if v.path == exe and v.offset == 0)
        vma = next(v for v in procfs.read_maps() if v.start <= lo < v.end)
        with open(exe, "rb") as fh:
            fh.seek(vma.offset + (lo - vma.start))
            on_disk = fh.read(hi - lo)
        out["changed"] = relocated != reverted
        out["now the file's bytes"] = reverted == on_disk
        os.write(1, (json.dumps(out) + "\\n").encode())
        os._exit(0)
        """,
    )
    assert result == {"relro sealed": True, "mem write": 16, "dontneed": "done",
                      "changed": True, "now the file's bytes": True}  # fmt: skip


def test_concurrent_imports_while_hardening(python: RunPython) -> None:
    result = child(
        python,
        """
        import threading, importlib
        names = ["_bz2", "_lzma", "_csv", "_json", "_pickle", "array", "cmath", "_queue",
                 "_statistics", "unicodedata", "_uuid", "_zoneinfo", "_contextvars"]
        errors = []
        def importer():
            try:
                for name in names:
                    importlib.import_module(name)
            except BaseException as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=importer) for _ in range(3)]
        for t in threads:
            t.start()
        for _ in range(5):
            sealkit.harden(imports=True)
        for t in threads:
            t.join(60)
        sealkit.harden()  # anything loaded between sweeps
        unsealed = sorted({os.path.basename(v.path) for v in procfs.read_smaps()
                           if "lib-dynload" in v.path and "x" in v.perms and not v.sealed})
        print(json.dumps({"errors": errors, "alive": any(t.is_alive() for t in threads),
                          "unsealed text": unsealed}))
        """,
    )
    assert result == {"errors": [], "alive": False, "unsealed text": []}


def test_hook_level_follows_the_strongest_request(python: RunPython) -> None:
    result = child(
        python,
        """
        def states(part):
            return sorted({(v.perms, bool(v.sealed)) for v in procfs.read_smaps() if part in v.path})
        sealkit.harden(imports=True)
        import _csv
        csv_then = states("_csv.cpython")
        sealkit.harden("all", imports=True)
        import _queue
        print(json.dumps({"_csv then": csv_then, "_csv": states("_csv.cpython"),
                          "_queue": states("_queue.cpython")}))
        """,
    )
    assert ["rw-p", False] in result["_csv then"] and ["r-xp", True] in result["_csv then"]
    # Level "all" from then on: _queue's data too, and _csv's (the second harden swept it).
    for name in ("_csv", "_queue"):
        assert all(sealed for _, sealed in result[name]) and ["rw-p", True] in result[name]


def test_fork_while_a_sweep_holds_the_lock(python: RunPython) -> None:
    # A thread holds the hooks' lock (as mid-sweep) when the main thread forks:
    # the child's imports must not wait for a thread that does not exist there.
    result = child(
        python,
        """
        import signal, threading
        from sealkit.sealing.hardening import hooks
        sealkit.harden(imports=True)
        held, release = threading.Event(), threading.Event()
        def holder():
            with hooks.STATE.lock:
                held.set()
                release.wait()
        t = threading.Thread(target=holder)
        t.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            import _csv
            ok = any(v.sealed for v in procfs.read_smaps() if "_csv.cpython" in v.path)
            os._exit(0 if ok else 3)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        release.set()
        t.join()
        print(json.dumps({"child": status}))
        """,
    )
    assert result == {"child": 0}


# The C fast path (sealkit._os._fastsys) and the ctypes fallback (no compiler at
# install time), for the tests of the races both must survive.
PATHS = pytest.mark.parametrize(
    "env", [None, {"SEALKIT_NO_FASTSYS": "1"}], ids=["fastsys", "ctypes"]
)


@PATHS
@pytest.mark.parametrize("query", ["procmap-query", "no-procmap-query"])
def test_a_range_that_changed_since_planned_is_not_sealed(
    python: RunPython, libs: dict[str, str], env: dict[str, str] | None, query: str
) -> None:
    # Between harden()'s plan and its mseal calls another thread unmaps a
    # library's text page and maps anonymous rwx memory there. (Since harden
    # pins what it seals, a dlclose no longer unmaps anything once pinning
    # is done: the raw munmap is what is left; a dlclose before the pin is
    # the next test.) The profile hook only pins the switch to that window
    # (the GIL may switch there at any bytecode boundary anyway). That page
    # must not be sealed, and the report must say why.
    result = child(
        python,
        RACE_BODY,
        libs["plain"],
        query,
        "apply_plans",
        env=env,
    )
    assert result["remapped"] is True
    assert result["now"] == ["rwxp", "", False], "the rwx page the other thread mapped was sealed"
    assert result["reported sealed"] == []
    assert result["reported skipped"] == [
        ["text", "changed since planned: mapped writable and executable"]
    ]


def test_a_library_dlclosed_before_it_is_pinned_is_not_sealed(
    python: RunPython, libs: dict[str, str]
) -> None:
    # The other thread dlcloses the library (really unloaded: not pinned yet)
    # between the plan and the pin, and maps rwx memory at its text address.
    result = child(python, RACE_BODY, libs["plain"], "procmap-query", "pin_plans")
    assert result["remapped"] is True
    assert result["now"] == ["rwxp", "", False]
    assert result["reported sealed"] == []
    ((kind, reason),) = result["reported skipped"]
    assert kind == "text" and reason.startswith("could not be pinned (not found by dlopen"), reason


RACE_BODY = """
        import _ctypes, threading
        from sealkit.errors import NotSupportedError
        if sys.argv[2] == "no-procmap-query":
            # Linux 6.10 (mseal, no PROCMAP_QUERY): the ioctl fails with ENOTTY
            def enotty(*args, **kwargs):
                raise NotSupportedError(25, "ioctl(PROCMAP_QUERY)")
            sc._fast_seal = None
            sc.procmap_vmas = enotty
        lib = ctypes.CDLL(sys.argv[1])
        text = down(ctypes.cast(lib.bump, ctypes.c_void_p).value)
        go, done = threading.Event(), threading.Event()
        def other():
            go.wait()
            MAP_FIXED_NOREPLACE = 0x100000
            if sys.argv[3] == "pin_plans":
                _ctypes.dlclose(lib._handle)
            else:
                sc.munmap(text, PAGE)
            got = sc.mmap(text, PAGE, RWX, 0x22 | MAP_FIXED_NOREPLACE)
            out["remapped"] = got == text
            done.set()
        out = {}
        threading.Thread(target=other).start()
        def prof(frame, event, arg):
            if event == "call" and frame.f_code.co_name == sys.argv[3]:
                go.set()
                done.wait()
        sys.setprofile(prof)
        report = sealkit.harden()
        sys.setprofile(None)
        (obj,) = report.find("plain.so")
        out["reported sealed"] = [r.kind for r in obj.sealed if r.start <= text < r.end]
        out["reported skipped"] = [(r.kind, r.reason) for r in obj.skipped
                                   if r.start <= text < r.end]
        (vma,) = [v for v in procfs.read_smaps() if v.start <= text < v.end]
        out["now"] = [vma.perms, vma.path, bool(vma.sealed)]
        # os._exit: the munmapped text page holds plain.so's destructors,
        # which a normal exit would run.
        os.write(1, (json.dumps(out) + "\\n").encode())
        os._exit(0)
"""


DEADLOCK_BODY = """
import glob, importlib.util, threading, time
paths = sorted(glob.glob(os.path.join(sys.argv[1], "*", "_json*")))
def load(path):
    importlib.util.module_from_spec(importlib.util.spec_from_file_location("_json", path))
if sys.argv[2] == "harden-loop":
    # dry runs, one after another, while a thread imports extension modules
    sealkit.harden(dry_run=True)
    def importer():
        for path in paths:
            load(path)
            time.sleep(0.0005)  # the GIL changes hands often
    t = threading.Thread(target=importer)
    t.start()
    calls = 0
    while t.is_alive():
        sealkit.harden(dry_run=True)
        calls += 1
    print(json.dumps({"calls": calls > 0}))
else:
    # the import hook's sweeps, from 4 threads importing at once
    sys.setswitchinterval(1e-5)
    sealkit.harden(imports=True)
    def worker(k):
        for path in paths[k::4]:
            load(path)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    unsealed = sum(1 for v in procfs.read_smaps()
                   if sys.argv[1] in v.path and "x" in v.perms and not v.sealed)
    print(json.dumps({"unsealed": unsealed}))
"""


@pytest.fixture(scope="module")
def json_copies(tmp_path_factory: pytest.TempPathFactory) -> str:
    """150 copies of the ``_json`` extension module, one a directory, so that
    each import dlopens a new object."""
    import _json

    if not getattr(_json, "__file__", None):
        pytest.skip("_json is built into this interpreter")
    out = tmp_path_factory.mktemp("json-copies")
    for i in range(150):
        (out / str(i)).mkdir()
        shutil.copy(_json.__file__, out / str(i) / Path(_json.__file__).name)
    return str(out)


@PATHS
@pytest.mark.parametrize("scenario", ["harden-loop", "import-hook"])
def test_no_deadlock_with_concurrent_extension_imports(
    python: RunPython, json_copies: str, env: dict[str, str] | None, scenario: str
) -> None:
    # dl_iterate_phdr holds the loader lock while it calls back; an importing
    # thread calls dlopen with the GIL held. Python code in the callback used
    # to hand that thread the GIL: both waited forever. The C walk runs no
    # Python code under the lock, so with it this must always finish. The
    # ctypes fallback is best-effort (docs/hardening.md): for it this asserts
    # completion of this workload, not a guarantee.
    try:
        proc = python(PRELUDE + DEADLOCK_BODY, json_copies, scenario, env=env, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: still running after 20 s (deadlocked on the loader lock)")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == ({"calls": True} if scenario == "harden-loop" else {"unsealed": 0})


C_SOURCE = """
int counter = 1;
static const char msg[8192] = "hello";
int bump(int x) { counter += x; return counter + msg[0]; }
char big_bss[20000];
"""


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Small shared libraries built for the occasion: ``plain``; ``gap``
    (64 KiB max-page-size, so PROT_NONE holes between its segments on 4 KiB
    pages); ``execstack`` (asks for an executable stack)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("needs a C compiler (gcc or cc) to build test libraries")
    out = tmp_path_factory.mktemp("harden-libs")
    src = out / "t.c"
    src.write_text(C_SOURCE)
    flags = {
        "plain": [],
        "gap": ["-Wl,-z,max-page-size=0x10000", "-Wl,-z,separate-code"],
        "execstack": ["-Wl,-z,execstack"],
    }
    built = {}
    for name, extra in flags.items():
        target = out / f"{name}.so"
        subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(target), str(src), *extra],
                       check=True, capture_output=True)  # fmt: skip
        built[name] = str(target)
    return built
