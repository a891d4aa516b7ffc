"""What a program is, as far as loader sealing goes: detected before the exec.

The library is loaded by glibc's dynamic loader, so it reaches only programs
that glibc's loader starts and that it does not run in secure mode. This
module reads the file the kernel will execute (following ``#!`` lines as the
kernel does) and says, in one line, why a program cannot be sealed:

* statically linked (no ``PT_INTERP``; Go's default build, named as such
  from its ``.note.go.buildid`` or ``.go.buildinfo`` section): no loader runs;
* set-user-ID, set-group-ID or file capabilities: the kernel sets
  ``AT_SECURE`` and glibc's loader ignores ``LD_AUDIT``/``LD_PRELOAD`` paths
  that contain a '/' (glibc ``elf/rtld.c``, ``dso_name_valid_for_suid``);
* musl's loader (no rtld-audit interface) or another loader;
* another ELF class or machine (a 32-bit program on x86_64).

Reads are bounded (a 256-byte head, at most 512 program headers, 4,096
section headers, 1 MiB of section names); files are opened with
:func:`sealkit._os.files.open_regular` (no blocking on a FIFO).
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from typing import Final, NamedTuple

from ..._os.files import NotRegularFile, open_regular
from ...errors import SealkitError

__all__ = ["ExecRefused", "Program", "inspect_program", "resolve_program"]

_PT_INTERP: Final = 3
_EM_NAMES: Final = {3: "i386", 62: "x86_64", 40: "arm", 183: "aarch64", 243: "riscv", 21: "ppc64"}
_MACHINE_OF_UNAME: Final = {"x86_64": 62, "aarch64": 183}
_MAX_SHEBANG_DEPTH: Final = 4  # the kernel's BINPRM_MAX_RECURSION (fs/exec.c)


class ExecRefused(SealkitError):
    """``sealkit exec`` will not run the program as asked; ``str()`` is one line.

    ``status`` is the exit status the command line returns: 2 (the library is
    missing, a bad option), 1 (``--require sealed`` cannot be met), 126 / 127
    (not executable / not found, as shells say).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type[ExecRefused], tuple[str, int]]:
        return type(self), (str(self), self.status)


class Program(NamedTuple):
    """What ``path`` is, for loader sealing.

    ``kind``: ``glibc`` (dynamically linked with glibc's loader: sealable),
    ``static``, ``secure`` (set-user-ID, set-group-ID, file capabilities),
    ``musl``, ``foreign`` (another loader), ``class`` (another ELF class or
    machine), ``noexec`` (neither ELF nor a ``#!`` script). ``detail`` is one
    line. ``runs`` is the file the kernel finally executes (the interpreter
    of a ``#!`` script); ``loader`` its ``PT_INTERP``; ``go`` whether it is a
    Go binary.
    """

    path: str
    kind: str
    detail: str
    runs: str
    loader: str | None = None
    go: bool = False

    @property
    def sealable(self) -> bool:
        return self.kind == "glibc"


def resolve_program(name: str, env: Mapping[str, str]) -> str:
    """The file ``execvp`` would run for ``name`` with ``env``'s ``PATH``.

    Raises :class:`ExecRefused` (127 not found, 126 not an executable file).
    """
    if not name:
        raise ExecRefused("sealkit exec: empty program name", 127)
    if "/" in name:
        candidates = [name]
    else:
        search = env.get("PATH", os.defpath)
        candidates = [os.path.join(d or ".", name) for d in search.split(":")]
    denied = None
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            return path
        denied = path
    if denied is not None:
        raise ExecRefused(
            f"sealkit exec: {denied}: permission denied (not an executable file)", 126
        )
    raise ExecRefused(f"sealkit exec: {name}: command not found", 127)


class _Elf(NamedTuple):
    elfclass: int
    machine: int
    interp: str | None
    go: bool


def _elf_info(fd: int) -> _Elf | None:
    """Class, machine, ``PT_INTERP`` and Go-ness of the ELF file open at ``fd``."""
    head = os.pread(fd, 64, 0)
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack_from(order + "H", head, 18)
    if wide:
        if len(head) < 64:
            return None
        phoff, shoff = struct.unpack_from(order + "QQ", head, 32)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(order + "HHHHH", head, 54)
    else:
        phoff, shoff = struct.unpack_from(order + "II", head, 28)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(order + "HHHHH", head, 42)
    interp = None
    if 0 < phnum <= 512 and phentsize == (56 if wide else 32):
        table = os.pread(fd, phentsize * phnum, phoff)
        for i in range(len(table) // phentsize):
            if wide:
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
                    order + "IIQQQQ", table, i * 56
                )
            else:
                p_type, p_offset, _, _, p_filesz = struct.unpack_from(
                    order + "IIIII", table, i * 32
                )
            if p_type == _PT_INTERP and 0 < p_filesz <= 4096:
                raw = os.pread(fd, p_filesz, p_offset)
                interp = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
    go = _is_go(fd, wide, order, shoff, shentsize, shnum, shstrndx)
    return _Elf(64 if wide else 32, machine, interp, go)


def _is_go(
    fd: int, wide: bool, order: str, shoff: int, shentsize: int, shnum: int, strndx: int
) -> bool:
    """Whether the file has Go's ``.go.buildinfo`` or ``.note.go.buildid`` section."""
    if not (0 < shnum <= 4096 and shentsize == (64 if wide else 40) and strndx < shnum):
        return False
    table = os.pread(fd, shentsize * shnum, shoff)
    if len(table) < shentsize * shnum:
        return False
    fmt = order + ("IIQQQQ" if wide else "IIIIII")
    _, _, _, _, str_off, str_size = struct.unpack_from(fmt, table, strndx * shentsize)
    names = os.pread(fd, min(str_size, 1 << 20), str_off)
    return b".go.buildinfo\0" in names or b".note.go.buildid\0" in names


def _no_new_privs() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            return any(line.split()[:2] == ["NoNewPrivs:", "1"] for line in f)
    except OSError:
        return False


def _secure_reason(path: str, st: os.stat_result) -> str | None:
    """Why the kernel would start ``path`` with ``AT_SECURE`` set, or ``None``.

    The kernel sets it when the new effective ids differ from the real ones
    (set-user-ID or set-group-ID of an owner other than the caller's real
    ids) or when file capabilities raise those of a caller whose real uid is
    not root (``cap_bprm_creds_from_file``, security/commoncap.c);
    ``no_new_privs`` and a ``nosuid`` mount disable both.
    """
    if _no_new_privs() or os.statvfs(path).f_flag & os.ST_NOSUID:
        return None
    if st.st_mode & stat.S_ISUID and st.st_uid != os.getuid():
        return "set-user-ID"
    if st.st_mode & stat.S_ISGID and st.st_gid != os.getgid():
        return "set-group-ID"
    try:
        os.getxattr(path, "security.capability")
    except OSError:
        return None
    return "file capabilities" if os.getuid() != 0 else None


def inspect_program(path: str, _depth: int = 0) -> Program:
    """What the kernel and the loader will do with ``path`` (a resolved path).

    Raises :class:`ExecRefused` (126) when the file cannot be read.
    """
    try:
        fd, st = open_regular(path)
    except NotRegularFile as exc:
        raise ExecRefused(f"sealkit exec: {path}: {exc}, not an executable file", 126) from None
    except OSError as exc:
        raise ExecRefused(f"sealkit exec: {path}: {exc.strerror}", 126) from None
    try:
        head = os.pread(fd, 256, 0)
        info = None if head.startswith(b"#!") else _elf_info(fd)
    except OSError as exc:
        raise ExecRefused(f"sealkit exec: {path}: {exc.strerror}", 126) from None
    finally:
        os.close(fd)
    if head.startswith(b"#!"):
        if _depth >= _MAX_SHEBANG_DEPTH:
            return Program(path, "noexec", f"{path}: too many levels of #! interpreters", path)
        words = head[2:].split(b"\n", 1)[0].strip().split(None, 1)
        if not words:
            return Program(path, "noexec", f"{path}: empty #! line", path)
        interpreter = os.fsdecode(words[0])
        inner = inspect_program(interpreter, _depth + 1)
        detail = inner.detail.replace(interpreter, f"{path} (a script run by {interpreter})", 1)
        return inner._replace(path=path, detail=detail)
    if info is None:
        return Program(path, "noexec", f"{path}: not an ELF executable nor a #! script", path)
    machine = os.uname().machine
    if info.elfclass != 64 or info.machine != _MACHINE_OF_UNAME.get(machine):
        what = f"{info.elfclass}-bit {_EM_NAMES.get(info.machine, f'machine {info.machine}')}"
        detail = f"{path}: a {what} program; libsealexec is built for {machine}"
        return Program(path, "class", detail, path, info.interp, info.go)
    if info.interp is None:
        lang = "a Go program, " if info.go else ""
        detail = (
            f"{path}: {lang}statically linked: no dynamic loader runs, so nothing loads libsealexec"
        )
        return Program(path, "static", detail, path, None, info.go)
    base = os.path.basename(info.interp)
    if base.startswith("ld-musl"):
        detail = f"{path}: uses the musl loader {info.interp}, which has no rtld-audit interface"
        return Program(path, "musl", detail, path, info.interp, info.go)
    if not base.startswith(("ld-linux", "ld64.so")):
        detail = f"{path}: its loader {info.interp} is not glibc's"
        return Program(path, "foreign", detail, path, info.interp, info.go)
    secure = _secure_reason(path, st)
    if secure:
        detail = (
            f"{path}: {secure}: the loader runs it in secure mode and ignores "
            "LD_AUDIT and LD_PRELOAD paths"
        )
        return Program(path, "secure", detail, path, info.interp, info.go)
    detail = f"{path}: dynamically linked, glibc loader {info.interp}"
    return Program(path, "glibc", detail, path, info.interp, info.go)
