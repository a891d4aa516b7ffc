"""``libsealexec.so``, the loader-side library of ``sealkit exec``: where it is, how it is built.

The library (source: ``_sealexec.c`` next to this file) is not a Python
extension: glibc's dynamic loader loads it into programs that are not Python
(``LD_AUDIT`` and ``LD_PRELOAD``), so it links neither libc nor libpython.
``setup.py`` builds it at install time with the C compiler setuptools uses
(:func:`build`) and puts it next to this module; it is never built on the fly
at run time. Without a compiler the install still succeeds: :func:`library_path`
then returns ``None``, ``sealkit exec`` says so in one line and exits 2, and
``sealkit check`` reports it.

Standard library only, and no relative import: ``setup.py`` runs this file by
path (``runpy``) while sealkit itself is not importable yet::

    python src/sealkit/_os/sealexec.py OUT.so       (exit 0 built, 1 not built)
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from typing import Final

__all__ = ["ARCH_FLAGS", "CFLAGS", "LIBRARY_NAME", "SOURCE", "build", "library_path", "loader_of"]

LIBRARY_NAME: Final = "libsealexec.so"
SOURCE: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sealexec.c")

CFLAGS: Final = (
    "-shared",
    "-fPIC",
    "-O2",
    "-std=gnu11",
    "-nostdlib",  # no libc in the audit namespace: the loader would map a second one there
    "-ffreestanding",
    "-fno-stack-protector",  # no TLS canary: the audit namespace has no libc to set one up
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wl,-z,relro,-z,now",
    "-Wl,-z,noexecstack",
    "-Wl,--build-id=none",
)
ARCH_FLAGS: Final = {
    # landing pads on every entry point, for processes that enforce them
    # (the library's few lines of assembly carry their own: endbr64, bti c)
    "x86_64": ("-fcf-protection=branch",),
    "aarch64": ("-mbranch-protection=standard",),
}


def library_path() -> str | None:
    """The built library next to this module (an absolute path), or ``None``."""
    here = os.path.join(os.path.dirname(os.path.realpath(__file__)), LIBRARY_NAME)
    try:
        st = os.stat(here)
    except OSError:
        return None
    return here if stat.S_ISREG(st.st_mode) else None


def loader_of(path: str) -> str | None:
    """The ``PT_INTERP`` (dynamic loader) of the 64-bit little-endian ELF file
    ``path``, or ``None`` (not such a file, or statically linked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            (phoff,) = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            if phentsize != 56 or not 0 < phnum <= 512:
                return None
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(len(table) // phentsize):
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * 56)
                if p_type == 3 and 0 < p_filesz < 4096:
                    f.seek(p_offset)
                    return f.read(p_filesz).rstrip(b"\0").decode("utf-8", "surrogateescape")
    except OSError:
        return None
    return None


def build(out: str, cc: str | None = None, extra: tuple[str, ...] = ()) -> str | None:
    """Compile the library to ``out``; ``None`` on success, else why not (one line).

    The library gets a ``DT_NEEDED`` on the dynamic loader (this Python's
    ``PT_INTERP``) so that ld.so's exported ``_r_debug`` and
    ``__libc_stack_end`` resolve in the audit namespace too; that adds no
    mapping at run time (one loader serves every namespace). ``out`` is
    replaced atomically: a process that has the old file mapped keeps it.
    """
    import shutil  # noqa: PLC0415 - only the build needs these
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    compiler = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return "no C compiler found (set CC, or install gcc)"
    interp = loader_of(os.path.realpath(sys.executable))
    if interp is None or "ld-linux" not in os.path.basename(interp) or not os.path.exists(interp):
        return f"this Python's loader is not glibc's ({interp or 'statically linked'})"
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    # the temporary file next to `out`, so that the final rename is atomic
    with tempfile.TemporaryDirectory(prefix=".sealexec-build-", dir=directory) as tmp:
        target = os.path.join(tmp, LIBRARY_NAME)
        arch = ARCH_FLAGS.get(os.uname().machine, ())
        argv = [*compiler.split(), *CFLAGS, *arch, *extra, "-o", target, SOURCE,
                "-Wl,--no-as-needed", interp]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{compiler}: {exc}"
        if done.returncode != 0:
            lines = done.stderr.splitlines()
            first = next((ln for ln in lines if "error" in ln), done.stderr.strip())
            return f"{compiler} failed: {first[:300] or f'exit status {done.returncode}'}"
        os.chmod(target, 0o755)
        os.replace(target, out)
    return None


if __name__ == "__main__":
    _why = build(sys.argv[1] if len(sys.argv) > 1 else SOURCE[: -len("_sealexec.c")] + LIBRARY_NAME)
    if _why:
        print(f"libsealexec.so not built: {_why}", file=sys.stderr)
    sys.exit(1 if _why else 0)
