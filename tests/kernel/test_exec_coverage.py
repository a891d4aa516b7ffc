"""What is sealed: every start-up object, later loads by policy, libc's own
loads (NSS, gconv, libgcc_s), --level all, --marked-only; and the report
agrees with /proc/PID/smaps range for range."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sealkit._os import procfs
from sealkit._os.elf import load_layout
from sealkit.host import elf
from sealkit.sealing import exec as sealexec
from tests.exec_support import SRC, plain_env, sealkit_argv, sealkit_env

pytestmark = pytest.mark.kernel

SCHEMA = SRC / "sealkit" / "data" / "exec.schema.json"


class Held:
    """A sealed probe kept alive (its last step is ``hold``) so that its
    smaps can be read; the report it wrote so far."""

    def __init__(
        self, words: list[str], steps: list[str], report: Path, env: dict[str, str]
    ) -> None:
        self.proc = subprocess.Popen(
            sealkit_argv("exec", "--report", str(report), *words, "--", *steps, "hold"),
            env=sealkit_env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        while True:
            line = self.proc.stdout.readline()
            assert line, self.proc.stderr.read() if self.proc.stderr else "probe ended early"
            if line == "holding\n":
                break
            self.lines.append(line.rstrip("\n"))
        self.pid = self.proc.pid
        self.report = report

    def objects(self) -> dict[str, sealexec.ReportObject]:
        objs = sealexec.read_exec_report(self.report)[self.pid]
        return {o.path: o for o in objs.values() if o.loaded_by != "sealkit"}

    def smaps(self) -> list[procfs.Vma]:
        return procfs.read_smaps(self.pid)

    def end(self) -> None:
        self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0


def sealed_kinds(vmas: list[procfs.Vma], path: str) -> dict[str, bool]:
    """``{"r-x": sealed?, ...}`` over the VMAs of ``path`` (all must agree)."""
    out: dict[str, bool] = {}
    for v in vmas:
        if v.path == path:
            key = v.perms[:3]
            out[key] = out.get(key, True) and bool(v.sealed)
    return out


def agree(held: Held) -> None:
    """The report and smaps agree, range for range, on every reported object."""
    objects = sealexec.read_exec_report(held.report)[held.pid].values()
    vmas = held.smaps()
    problems = sealexec.check_against_smaps(
        objects, [(v.start, v.end, v.path) for v in vmas if v.sealed]
    )
    assert problems == []


@pytest.fixture
def probe_run(fx, tmp_path):
    started: list[Held] = []

    def start(*steps: str, words: tuple[str, ...] = (), **env: str) -> Held:
        held = Held(
            list(words),
            [str(fx.probe), *steps],
            tmp_path / f"r{len(started)}.jsonl",
            plain_env(**env),
        )
        started.append(held)
        return held

    yield start
    for held in started:
        if held.proc.poll() is None:
            held.proc.kill()
            held.proc.wait()


def test_every_start_up_object_is_sealed_and_the_report_agrees_with_smaps(probe_run):
    held = probe_run()
    objs = held.objects()
    vmas = held.smaps()
    files = {
        v.path
        for v in vmas
        if (v.inode and v.path.endswith((".so", ".so.6", ".so.2", "probe"))) or "ld-linux" in v.path
    }
    assert files <= set(objs), files - set(objs)
    for path in files:
        kinds = sealed_kinds(vmas, path)
        assert kinds["r-x"] is True, path
        assert kinds["r--"] is True, path  # rodata and RELRO
        assert kinds.get("rw-") in (False, None), path  # level code leaves data alone
    agree(held)
    held.end()


def test_report_lines_follow_the_schema(probe_run, fx):
    jsonschema = pytest.importorskip("jsonschema")
    held = probe_run(
        "dlopen", str(fx.root / "libctorcheck.so"), "now-nodelete", "nss", "iconv", "cancel"
    )
    held.end()
    schema = json.loads(SCHEMA.read_text())
    lines = [json.loads(x) for x in held.report.read_text().splitlines()]
    assert next(x["event"] for x in lines) == "startup"
    for line in lines:
        jsonschema.validate(line, schema)


def test_dlopen_without_nodelete_is_not_sealed_at_level_code(probe_run, fx):
    held = probe_run("dlopen", str(fx.root / "libctorcheck.so"), "now", "sealed", "libctorcheck")
    assert held.lines[-1] == "sealed libctorcheck: text=no readonly=no"
    obj = held.objects()[str(fx.root / "libctorcheck.so")]
    assert obj.loaded_by == "dlopen" and not obj.sealing and obj.sealed == ()
    assert "without RTLD_NODELETE" in obj.policy
    agree(held)
    held.end()


def test_level_all_seals_every_dlopened_object_whole(probe_run, fx):
    held = probe_run("dlopen", str(fx.root / "libctorcheck.so"), "now", words=("--level", "all"))
    path = str(fx.root / "libctorcheck.so")
    obj = held.objects()[path]
    assert obj.sealing and "--level all" in obj.policy
    assert {k for _, _, k, _, _ in obj.sealed} >= {"text", "rodata", "relro", "data"}
    kinds = sealed_kinds(held.smaps(), path)
    assert kinds == {"r--": True, "r-x": True, "rw-": True}
    agree(held)
    held.end()


def test_nodelete_promotion_of_an_already_loaded_object(probe_run, fx):
    lib = str(fx.root / "libctorcheck.so")
    held = probe_run("dlopen", lib, "now", "dlopen", lib, "now-nodelete", "sealed", "libctorcheck")
    assert held.lines[-1] == "sealed libctorcheck: text=sl readonly=sl"
    obj = held.objects()[lib]
    assert "made RTLD_NODELETE" in obj.policy
    assert {phase for *_, phase in obj.sealed} == {"nodelete-promotion"}
    agree(held)
    held.end()


# Objects libc loads by itself, one of each kind. Their text and read-only
# data are sealed at their la_activity(CONSISTENT); their RELRO once it is
# read-only (on glibc < 2.41 at the process's next loader event: no dlopen()
# wrapper sees libc's internal loads), and until then the report lists it as
# pending.


def by_name(held: Held, name: str) -> sealexec.ReportObject:
    (obj,) = [o for p, o in held.objects().items() if Path(p).name == name]
    return obj


def ro(obj: sealexec.ReportObject) -> str:
    """The probe's view of the object's read-only mappings (read-only data
    and RELRO): all sealed, unless the report says RELRO is still pending."""
    return "no" if obj.pending else "sl"


def relro_sealed_or_pending(obj: sealexec.ReportObject) -> None:
    sealed = {k for _, _, k, _, _ in obj.sealed}
    assert sealed >= {"text", "rodata"}, obj.path
    assert "relro" in sealed or obj.pending, obj.path


def test_an_nss_module_libc_loads_is_sealed(probe_run):
    # getpwnam through "compat": libc's nss_module.c loads libnss_compat.so.2
    # and never unloads it
    held = probe_run("nss", "sealed", "libnss_compat")
    obj = by_name(held, "libnss_compat.so.2")
    assert obj.loaded_by == "libc" and obj.sealing
    relro_sealed_or_pending(obj)
    assert held.lines == ["nss: root uid=0", f"sealed libnss_compat: text=sl readonly={ro(obj)}"]
    agree(held)
    held.end()


def test_libgcc_s_libc_loads_for_thread_cancellation_is_sealed(probe_run):
    # pthread_cancel: libc's unwind-link.c loads libgcc_s.so.1, never unloaded
    held = probe_run("cancel", "sealed", "libgcc_s")
    obj = by_name(held, "libgcc_s.so.1")
    assert obj.loaded_by == "libc" and obj.sealing
    relro_sealed_or_pending(obj)
    assert held.lines == ["cancel: canceled", f"sealed libgcc_s: text=sl readonly={ro(obj)}"]
    agree(held)
    held.end()


@pytest.mark.parametrize("level", ["code", "all"])
def test_a_gconv_module_libc_loads_is_sealed_at_level_all_only(probe_run, level):
    # iconv_open("UTF-8", "IBM037"): libc's gconv_dl.c loads IBM037.so and
    # unloads it again when no converter uses it: not sealed at level code
    held = probe_run("iconv", "sealed", "IBM037", words=("--level", level))
    obj = by_name(held, "IBM037.so")
    assert obj.loaded_by == "libc"
    if level == "code":
        assert not obj.sealing and "may be unloaded" in obj.policy and obj.sealed == ()
        assert held.lines == ["iconv: Hello", "sealed IBM037: text=no readonly=no"]
    else:
        assert obj.sealing and "--level all" in obj.policy
        relro_sealed_or_pending(obj)
        assert held.lines == ["iconv: Hello", f"sealed IBM037: text=sl readonly={ro(obj)}"]
    agree(held)
    held.end()


def test_libgcc_relro_is_sealed_by_the_next_loader_event(probe_run, fx):
    # libgcc_s comes from libc's own dlopen (no wrapper): on glibc < 2.41 its
    # RELRO is sealed at the next loader event, here a dlopen.
    held = probe_run(
        "cancel", "dlopen", str(fx.root / "libctorcheck.so"), "now", "sealed", "libgcc_s"
    )
    assert held.lines[-1] == "sealed libgcc_s: text=sl readonly=sl"
    (o,) = [o for p, o in held.objects().items() if "libgcc_s" in p]
    assert "relro" in {k for _, _, k, _, _ in o.sealed}
    agree(held)
    held.end()


def test_the_dlopen_wrapper_keeps_the_callers_search_path(fx, sealkit_exec, tmp_path):
    # runpath_main dlopens a bare name found only via its own DT_RUNPATH and
    # a $ORIGIN path: glibc resolves both from the caller's object, so the
    # wrapper jumps to the real dlopen (the caller's return address intact).
    report = tmp_path / "r.jsonl"
    done = sealkit_exec(
        "exec",
        "--level",
        "all",
        "--report",
        str(report),
        "--",
        str(fx.runpath_main),
        env=plain_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "bare=ok origin=ok value=7\n"
    plain = subprocess.run(
        [fx.runpath_main], capture_output=True, text=True, env=plain_env(), check=False
    )
    assert plain.stdout == done.stdout
    (objs,) = sealexec.read_exec_report(report).values()
    (dep,) = [o for o in objs.values() if o.path.endswith("rp/libdep.so")]
    # sealed (level all), its RELRO not by the wrapper's return path (a jump)
    assert dep.sealing and dep.sealed
    assert "dlopen-return" not in {phase for *_, phase in dep.sealed}


def test_marked_only_seals_only_marked_objects_and_reads_the_marker_as_sealkit_elf(
    fx, sealkit_exec, tmp_path
):
    report = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        sealkit_argv("exec", "--marked-only", "--report", str(report), "--", str(fx.markedmain)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=sealkit_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "3 42\n"
    vmas = procfs.read_smaps(proc.pid)
    proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    (objs,) = sealexec.read_exec_report(report).values()
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    marked = {
        o["path"]: o["marked"] for x in lines for o in x["objects"] if o["marked"] is not None
    }
    assert marked[str(fx.root / "libmarked.so")] is True
    for path, is_marked in marked.items():
        assert elf.inspect(path).marked == is_marked, path
    for o in objs.values():
        if o.path == str(fx.root / "libmarked.so"):
            assert o.sealed and sealed_kinds(vmas, o.path)["r-x"] is True
        elif o.loaded_by != "sealkit" and o.sealing and o.path.startswith("/"):
            assert (
                o.sealed == ()
                and o.not_sealed == "no GNU_PROPERTY_MEMORY_SEAL marker (--marked-only)"
            ), o.path


def test_an_address_space_too_large_to_check_is_skipped_and_reported(fx, sealkit_exec, tmp_path):
    # more VMAs than the library reads (32768): it checks nothing, seals
    # nothing of the new object, says why, and the program goes on
    report = tmp_path / "r.jsonl"
    lib = str(fx.root / "libctorcheck.so")
    done = sealkit_exec(
        "exec", "--report", str(report), "--",
        str(fx.probe), "vmas", "40000", "dlopen", lib, "now-nodelete", "sealed", "libctorcheck", "nss",
        env=plain_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "vmas: ok",
        f"dlopen {lib} now-nodelete: ok",
        "sealed libctorcheck: text=no readonly=no",
        "nss: root uid=0",
    ]
    (objs,) = sealexec.read_exec_report(report).values()
    (o,) = [o for o in objs.values() if o.path == lib]
    assert o.sealed == ()
    assert o.not_sealed == "more than 32768 mappings: nothing checked, nothing sealed"


def test_relro_changed_after_relocation_is_skipped_and_reported(
    probe_run, fx, tmp_path, glibc_version
):
    # harden()'s rule: each range is checked against the live mapping when it
    # is sealed, and what changed is skipped with the reason. Here the
    # object's constructor makes its RELRO writable again after relocation.
    out = tmp_path / "relrow.txt"
    lib = str(fx.root / "librelrow.so")
    held = probe_run("dlopen", lib, "now-nodelete", RELROW_OUT=str(out))
    assert held.lines == [f"dlopen {lib} now-nodelete: ok"]
    obj = held.objects()[lib]
    assert obj.sealing and obj.pending == ()
    sealed = {k for _, _, k, _, _ in obj.sealed}
    assert sealed >= {"text", "rodata"}
    relro_start = relro_page(lib, obj.base)
    if glibc_version < (2, 41):
        # sealed text at la_activity(CONSISTENT) before relocation; the
        # constructor ran before the dlopen() wrapper's RELRO check
        assert out.read_text() == "mprotect=ok\n"
        skipped = [(s, why) for s, _, kind, why in obj.skipped if kind == "relro"]
        assert skipped and skipped[0] == (
            relro_start,
            "RELRO writable after relocation (its protection was changed): not sealed",
        )
        assert "relro" not in sealed or all(
            s != relro_start for s, _, k, _, _ in obj.sealed if k == "relro"
        )
    else:
        # glibc 2.41+: sealed at the callback, before the constructor ran
        assert out.read_text() == "mprotect=EPERM\n"
        assert "relro" in sealed
    agree(held)
    held.end()


def relro_page(path: str, base: int) -> int:
    """The first page of PT_GNU_RELRO of the ELF64 file ``path`` loaded at ``base``."""
    import struct

    data = Path(path).read_bytes()
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _, _, vaddr = struct.unpack_from("<IIQQ", data, phoff + i * phentsize)
        if p_type == 0x6474E552:
            return (base + vaddr) & ~4095
    raise AssertionError(f"{path}: no PT_GNU_RELRO")


def test_pt_gnu_mutable_is_never_sealed_even_at_level_all(fx, sealkit_exec, tmp_path):
    lib = fx.root / "libmutable.so"
    layout = load_layout(str(lib))
    (mut,) = [s for s in layout.segments if s.type == 0x6474F555]
    report = tmp_path / "r.jsonl"
    done = sealkit_exec(
        "exec", "--level", "all", "--report", str(report), "--",
        str(fx.probe), "call", str(lib), "mutable_reprotect", "sealed", "libmutable",
        env=plain_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # the mutable page can still be re-protected; the rest of the object is sealed
    assert done.stdout.splitlines() == [
        "call mutable_reprotect: 0",
        "sealed libmutable: text=sl readonly=sl",
    ]
    (objs,) = sealexec.read_exec_report(report).values()
    (o,) = [o for o in objs.values() if o.path == str(lib)]
    start = o.base + mut.vaddr
    skipped = [(s, e, why) for s, e, _, why in o.skipped if s <= start < e]
    assert skipped == [(start, start + 4096, "PT_GNU_MUTABLE range: never sealed")]
    assert not any(s < start + 4096 and start < e for s, e, *_ in o.sealed)
    kinds = {k for _, _, k, _, _ in o.sealed}
    assert {"text", "rodata", "relro", "data", "bss"} <= kinds
    # the control: the same library without the segment has that page sealed
    done = sealkit_exec("exec", "--level", "all", "--", str(fx.probe), "call", str(fx.root / "libnotmutable.so"),
                        "mutable_reprotect", env=plain_env())  # fmt: skip
    assert done.stdout == "call mutable_reprotect: 1\n"


def test_an_object_with_textrel_is_never_sealed(fx, sealkit_exec, tmp_path):
    lib = str(fx.root / "libtextrel.so")
    report = tmp_path / "r.jsonl"
    done = sealkit_exec(
        "exec", "--level", "all", "--report", str(report), "--",
        str(fx.probe), "call", lib, "textrel_get", "sealed", "libtextrel", "sealed", "libc.so",
        env=plain_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "call textrel_get: 5",
        "sealed libtextrel: text=no readonly=no",
        "sealed libc.so: text=sl readonly=sl",
    ]
    (objs,) = sealexec.read_exec_report(report).values()
    (o,) = [o for o in objs.values() if o.path == lib]
    assert (
        o.sealed == ()
        and o.not_sealed == "has DT_TEXTREL (the loader rewrites its text): never sealed"
    )


def test_a_writable_and_executable_segment_is_never_sealed(fx, sealkit_exec, tmp_path):
    lib = str(fx.root / "libwx.so")
    report = tmp_path / "r.jsonl"
    done = sealkit_exec(
        "exec", "--level", "all", "--report", str(report), "--",
        str(fx.probe), "call", lib, "ctorcheck_get", env=plain_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "call ctorcheck_get: 42\n"
    (objs,) = sealexec.read_exec_report(report).values()
    (o,) = [o for o in objs.values() if o.path == lib]
    wx = [
        (s, e)
        for s, e, _, why in o.skipped
        if why == "writable and executable segment: never sealed"
    ]
    assert wx, o.skipped
    assert {k for _, _, k, _, _ in o.sealed} >= {"text", "rodata"}
    for s, e in wx:
        assert not any(a < e and s < b for a, b, *_ in o.sealed)


def test_documented_breakage_dlopen_of_an_execstack_library_fails(fx, sealkit_exec):
    # glibc's _dl_make_stack_executable mprotects __stack_prot in ld.so's
    # RELRO, which is sealed: the dlopen fails (as with harden())
    lib = str(fx.root / "libexecstack.so")
    plain = subprocess.run(
        [fx.probe, "dlopen-fail", lib], capture_output=True, text=True, env=plain_env(), check=False
    )
    assert plain.stdout == "dlopen-fail: loaded\n"
    done = sealkit_exec("exec", "--", str(fx.probe), "dlopen-fail", lib, "nss", env=plain_env())
    assert done.returncode == 0
    assert (
        done.stdout
        == "dlopen-fail: cannot change memory protections: Operation not permitted\nnss: root uid=0\n"
    )


def test_an_object_linked_z_nodelete_is_sealed_when_dlopened_plainly(probe_run, fx):
    # DF_1_NODELETE: glibc never unloads it, whatever the dlopen mode
    lib = str(fx.root / "libnodelete.so")
    held = probe_run("dlopen", lib, "now", "sealed", "libnodelete")
    assert held.lines[-1] == "sealed libnodelete: text=sl readonly=sl"
    obj = held.objects()[lib]
    assert obj.sealing and obj.policy == "linked -z nodelete: never unloaded"
    agree(held)
    held.end()


def test_concurrent_dlopen_and_dlclose_from_four_threads(fx, sealkit_exec):
    # the wrapper, the loader callbacks and the sealing under one lock:
    # 4 threads x 200 dlopen/dlclose, of an object sealed (nodelete) and of one
    # that is not (and is unmapped again each time)
    sealed_lib, plain_lib = str(fx.root / "libnodelete.so"), str(fx.root / "libctorcheck.so")
    done = sealkit_exec(
        "exec", "--", str(fx.probe), "cycle", sealed_lib, "200", "4", "cycle", plain_lib, "200", "4",
        "sealed", "libnodelete", env=plain_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cycle: ok, ") and lines[1] == "cycle: ok, 0 mappings left"
    assert lines[2] == "sealed libnodelete: text=sl readonly=sl"


def test_level_all_dlclose_leaves_the_sealed_mapping_in_place(fx, sealkit_exec):
    # the stated cost of --level all: a sealed object cannot be unmapped, so
    # each dlopen/dlclose cycle leaves one copy behind (plain: none)
    lib = str(fx.root / "libctorcheck.so")
    plain = subprocess.run(
        [fx.probe, "cycle", lib, "5", "1"],
        capture_output=True,
        text=True,
        env=plain_env(),
        check=False,
    )
    assert plain.stdout == "cycle: ok, 0 mappings left\n"
    done = sealkit_exec(
        "exec", "--level", "all", "--", str(fx.probe), "cycle", lib, "5", "1", env=plain_env()
    )
    assert done.returncode == 0, done.stderr
    layout = load_layout(lib)
    per_copy = len(layout.loads) + (layout.relro is not None)
    assert done.stdout == f"cycle: ok, {5 * per_copy} mappings left\n"


def test_the_library_exports_only_the_loader_interfaces(exec_lib):
    # its own memcpy, memset... are hidden: loaded into a program, it must not
    # interpose anything but dlopen/dlmopen (preload) and the rtld-audit hooks
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm (binutils) to list the library's dynamic symbols")
    listing = subprocess.run([nm, "-D", "--defined-only", str(exec_lib)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    # global symbols (upper-case types); a local one such as __etext binds nothing
    exported = sorted(f[-1] for f in map(str.split, listing.splitlines()) if f[-2].isupper())
    assert exported == [
        "dlmopen", "dlopen", "la_activity", "la_objclose", "la_objopen", "la_preinit",
        "la_version", "sealkit_exec_bridge",
    ]  # fmt: skip
