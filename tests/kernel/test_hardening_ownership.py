"""harden() never seals what the object does not own, and stays bounded when
libraries come and go (issue 13), on the real kernel.

* A main program linked with a 2 MiB max-page-size has holes between its
  segments that the kernel leaves unmapped; another component's ``PROT_NONE``
  reservation there is not the program's and is never sealed.
* glibc's iconv (gconv) modules are dlopened and dlclosed behind Python's
  back; with ``harden(imports=True)`` a sealed module that is dlclosed
  cannot be unmapped, so each cycle used to leave its mappings behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.kernel

RunPython = Callable[..., subprocess.CompletedProcess[str]]

# A program that embeds Python. Its constructor plays "another component":
# it reserves 4 pages PROT_NONE (anonymous) in the first hole between the
# program's own segments, and passes the address on in RESERVED_AT.
EMBED_SOURCE = r"""
#define _GNU_SOURCE
#include <Python.h>
#include <link.h>
#include <stdio.h>
#include <sys/mman.h>

static unsigned long hole_lo;

static int find_hole(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    unsigned long prev_end = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        unsigned long start = (info->dlpi_addr + ph->p_vaddr) & ~4095UL;
        if (prev_end && start >= prev_end + 4 * 4096 && !hole_lo) hole_lo = prev_end;
        prev_end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + 4095) & ~4095UL;
    }
    return 1;  /* the first object is the main program */
}

__attribute__((constructor)) static void reserve(void) {
    dl_iterate_phdr(find_hole, NULL);
    if (hole_lo && mmap((void *)hole_lo, 4 * 4096, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
        hole_lo = 0;
}

int main(int argc, char **argv) {
    char at[32];
    snprintf(at, sizeof at, "%lu", hole_lo);
    setenv("RESERVED_AT", at, 1);
    Py_Initialize();
    int rc = argc > 1 ? PyRun_SimpleString(argv[1]) : 2;
    if (Py_FinalizeEx() < 0) rc = 120;
    return rc;
}
"""


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program above, linked with ``-z max-page-size=0x200000``."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("needs a C compiler (gcc or cc) to build the embedding program")
    include = sysconfig.get_config_var("INCLUDEPY") or ""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not Path(include, "Python.h").exists():
        pytest.skip("needs Python.h and a shared libpython to embed this interpreter")
    out = tmp_path_factory.mktemp("embed")
    src = out / "embed.c"
    src.write_text(EMBED_SOURCE)
    exe = out / "embed"
    libs = (sysconfig.get_config_var("LIBS") or "").split()
    cmd = [gcc, "-O1", "-o", str(exe), str(src), f"-I{include}",
           "-Wl,-z,max-page-size=0x200000", f"-L{libdir}", f"-Wl,-rpath,{libdir}",
           f"-lpython{sysconfig.get_config_var('LDVERSION')}", *libs, "-lm"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return exe


def test_harden_all_never_seals_a_reservation_in_the_main_programs_hole(embedded: Path) -> None:
    code = textwrap.dedent(
        """
        import json, os, sealkit
        from sealkit._os import procfs
        at = int(os.environ["RESERVED_AT"])
        exe = os.readlink("/proc/self/exe")
        def vma(addr):
            return next(v for v in procfs.read_smaps() if v.start <= addr < v.end)
        before = vma(at)
        report = sealkit.harden(level="all")
        mine = next(o for o in report.objects if o.path == exe)
        out = {
            "reserved": [before.perms, before.path, before.inode],
            "exe sealed": sorted({r.kind for r in mine.sealed}),
            "sealed there": any(r.start < at + 4 * 4096 and r.end > at
                                for o in report.objects for r in o.sealed),
            "skipped there": [r.reason for r in mine.skipped if r.start <= at < r.end],
            "smaps sealed": vma(at).sealed,
        }
        print(json.dumps(out))
        """
    )
    env = python_env({"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    proc = subprocess.run([str(embedded), code], capture_output=True, text=True, env=env,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["reserved"] == ["---p", "", 0]  # the constructor's reservation, in a hole
    assert {"text", "rodata", "data"} <= set(out["exe sealed"])  # the program itself was sealed
    assert out["sealed there"] is False
    assert out["smaps sealed"] is False
    assert len(out["skipped there"]) == 1 and "belongs to someone else" in out["skipped there"][0]


ICONV_LOOP = textwrap.dedent(
    """
    import ctypes, json, sys
    import sealkit
    from sealkit.sealing.hardening import hooks, pinned_objects

    mode, cycles = sys.argv[1], int(sys.argv[2])
    libc = ctypes.CDLL(None)
    libc.iconv_open.restype = ctypes.c_void_p
    libc.iconv_open.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.iconv_close.argtypes = (ctypes.c_void_p,)
    if mode == "unpinned":  # the behaviour before pinning, as the control
        hooks.pin_plans = lambda plans: None
    if mode != "plain":
        sealkit.harden(imports=True)

    def gconv():
        vmas = [line.split() for line in open("/proc/self/maps")]
        spans = [[int(x, 16) for x in v[0].split("-")] for v in vmas if "/gconv/" in v[-1]
                 and v[-1].endswith(".so")]
        return len(spans), sum(hi - lo for lo, hi in spans)

    # glibc unloads a gconv module once it has been unused through two
    # releases of others (gconv_dl.c, TRIES_BEFORE_UNLOAD): four charsets in
    # turn load and unload modules every cycle.
    charsets = [b"ISO-8859-2", b"KOI8-R", b"CP1251", b"ISO-8859-5"]
    counts = []
    for _ in range(cycles):
        for name in charsets:
            cd = libc.iconv_open(b"UTF-8", name)
            assert cd not in (None, ctypes.c_void_p(-1).value), name
            ctypes.CDLL("libc.so.6")  # a load event: the hooks' sweep runs
            libc.iconv_close(cd)
        counts.append(gconv())
    print(json.dumps({"counts": counts, "pinned": [p for p in pinned_objects() if "/gconv/" in p]}))
    """
)


def _iconv(python: RunPython, mode: str, cycles: int) -> tuple[list[tuple[int, int]], list[str]]:
    """(gconv mappings, bytes) after each cycle, and the gconv modules pinned."""
    proc = python(ICONV_LOOP, mode, str(cycles))
    if proc.returncode != 0 and "assert cd" in proc.stderr:
        pytest.skip("glibc's iconv modules for ISO-8859-2, KOI8-R, CP1251, ISO-8859-5 are missing")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return [(n, b) for n, b in result["counts"]], list(result["pinned"])


def test_iconv_modules_coming_and_going_stay_bounded(python: RunPython) -> None:
    cycles = 30
    plain, _ = _iconv(python, "plain", cycles)
    hardened, pinned = _iconv(python, "hardened", cycles)
    unpinned, _ = _iconv(python, "unpinned", cycles)
    # Without harden the modules really are unloaded and loaded again.
    assert plain[-1][0] < 4 * 5, plain[-1]
    # Hardened: each module is pinned once, then stays loaded: the mappings
    # stop growing after the first cycle.
    assert hardened[1] == hardened[-1], hardened
    assert len(pinned) == 4, pinned
    # The control (sealed, not pinned): every cycle leaves sealed copies behind.
    (n0, b0), (n1, b1) = unpinned[0], unpinned[-1]
    assert (n1 - n0) / (cycles - 1) >= 4, unpinned  # at least one VMA per module per cycle
    assert hardened[-1][0] < unpinned[-1][0] / 10
    # (docs/hardening.md quotes these: 20 mappings, 96 KiB per cycle here)
    print(f"unpinned: {(n1 - n0) / (cycles - 1):.1f} mappings, "
          f"{(b1 - b0) / (cycles - 1) / 1024:.1f} KiB left per cycle")  # fmt: skip
