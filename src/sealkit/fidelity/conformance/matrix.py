"""The measured madvise matrix (probe case 7.1) as conformance scenarios.

25 advices x 10 mapping types. As in the probe, each scenario builds an
unsealed control copy of the mapping type at pages [0,4) and an identical copy
at [8,12) that is then sealed, applies the advice to the whole of each
(control first), and checks both results and the final layout (protection,
seal, VmFlags, content). File types use a separate file per copy (f1, f2).
MADV_FREE scenarios follow up with MADV_PAGEOUT, which makes the kernel drop
the lazily-freed pages (the probe's "after reclaim" column); WIPEONFORK and
DONTFORK get a second scenario that forks and checks the child's view (the
probe's "fork child sees" column). GUARD_REMOVE rows pre-install a guard on
the second page of each copy before sealing, as the probe did.

The table below is transcribed from the probe run's condensed madvise
matrix and its per-type tables (docs/reference/linux.md rules 10-14); only
the 14 cells listed there differ between the control and the sealed copy.
"""

from __future__ import annotations

from typing import Final

from ...layout import Layout
from ...ops import parse_step
from ..target import Window
from . import Check, Scenario

__all__ = ["ADVICES", "TYPES", "matrix_scenarios"]

# type -> (description, perms, backing kind, base content is the file's?)
TYPES: Final[dict[str, tuple[str, str, str]]] = {
    "a": ("anonymous private, PROT_READ|PROT_WRITE", "rw-p", "anon"),
    "b": ("anonymous private, PROT_READ (written while rw, mprotect r, sealed)", "r--p", "anon"),
    "b2": (
        "anonymous private, PROT_NONE (written while rw, mprotect none, sealed)",
        "---p",
        "anon",
    ),
    "e": (
        "anonymous MAP_SHARED (shmem), PROT_READ (written while rw, mprotect r)",
        "r--s",
        "shmem",
    ),
    "c": ("file private, PROT_READ, pages CoW-modified while rw", "r--p", "file"),
    "c2": ("file private, PROT_READ, never written", "r--p", "file"),
    "c3": ("file private, PROT_READ|PROT_WRITE, pages CoW-modified", "rw-p", "file"),
    "d": ("file MAP_SHARED, PROT_READ|PROT_WRITE, written through the mapping", "rw-s", "file"),
    "d2": ("file MAP_SHARED, PROT_READ, O_RDWR fd (written while rw, mprotect r)", "r--s", "file"),
    "d3": ("file MAP_SHARED, PROT_READ, O_RDONLY fd (data written before mapping)", "r--s", "file"),
}
_ORDER: Final = ("a", "b", "b2", "e", "c", "c2", "c3", "d", "d2", "d3")

ADVICES: Final = (
    "dontneed", "free", "dontneed_locked", "remove", "wipeonfork", "keeponfork", "dontfork",
    "dofork", "guard_install", "guard_remove", "cold", "pageout", "willneed", "normal",
    "random", "sequential", "populate_read", "populate_write", "hugepage", "nohugepage",
    "collapse", "dontdump", "dodump", "mergeable", "unmergeable",
)  # fmt: skip

# Results on the sealed copy, per type in _ORDER ("0" unless listed).
_SEALED: Final[dict[str, tuple[str, ...]]] = {
    "dontneed": ("0", "EPERM", "EPERM", "0", "0", "0", "0", "0", "0", "0"),
    "free": ("0", "EPERM", "EPERM", *("EINVAL",) * 7),
    "dontneed_locked": ("0", "EPERM", "EPERM", "0", "0", "0", "0", "0", "0", "0"),
    "remove": ("EINVAL", "EPERM", "EPERM", "0", "EACCES", "EACCES", "EACCES", "0", "0", "EACCES"),
    "wipeonfork": ("0", "EPERM", "EPERM", *("EINVAL",) * 7),
    "dontfork": ("0", "EPERM", "EPERM", *("0",) * 7),
    "guard_install": ("0", "EPERM", "EPERM", *("0",) * 7),
    "populate_read": ("0", "0", "EINVAL", *("0",) * 7),
    "populate_write": ("0", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "0", "0", "EINVAL", "EINVAL"),
    "collapse": ("EINVAL",) * 10,
}  # fmt: skip
# The 14 cells where the unsealed control differs (docs/reference/linux.md rule 10).
_CONTROL_DIFF: Final[dict[str, str]] = {
    "dontneed": "0", "free": "0", "dontneed_locked": "0", "remove": "EINVAL",
    "wipeonfork": "0", "dontfork": "0", "guard_install": "0",
}  # fmt: skip
_FLAG: Final[dict[str, str]] = {
    "random": "rr", "sequential": "sr", "hugepage": "hg", "nohugepage": "nh",
    "dontdump": "dd", "mergeable": "mg", "wipeonfork": "wf", "dontfork": "dc",
}  # fmt: skip


def _result(advice: str, kind: str, sealed: bool) -> str:
    res = _SEALED.get(advice, ("0",) * 10)[_ORDER.index(kind)]
    if not sealed and kind in ("b", "b2") and advice in _CONTROL_DIFF:
        return _CONTROL_DIFF[advice]
    return res


def _setup(kind: str, page: int, file: str, guard: bool) -> list[str]:
    p = f"p{page}"
    lines = {
        "a": [f"mmap {p} 4p rw- private|anon|fixed = {p}", f"write {p} 4p = 0"],
        "b": [f"mmap {p} 4p rw- private|anon|fixed = {p}", f"write {p} 4p = 0",
              f"mprotect {p} 4p r-- = 0"],
        "b2": [f"mmap {p} 4p rw- private|anon|fixed = {p}", f"write {p} 4p = 0",
               f"mprotect {p} 4p --- = 0"],
        "e": [f"mmap {p} 4p rw- shared|anon|fixed = {p}", f"write {p} 4p = 0",
              f"mprotect {p} 4p r-- = 0"],
        "c": [f"mmap {p} 4p rw- private|fixed file={file} = {p}", f"write {p} 4p = 0",
              f"mprotect {p} 4p r-- = 0"],
        "c2": [f"mmap {p} 4p r-- private|fixed file={file} = {p}"],
        "c3": [f"mmap {p} 4p rw- private|fixed file={file} = {p}", f"write {p} 4p = 0"],
        "d": [f"mmap {p} 4p rw- shared|fixed file={file} = {p}", f"write {p} 4p = 0"],
        "d2": [f"mmap {p} 4p rw- shared|fixed file={file} = {p}", f"write {p} 4p = 0",
               f"mprotect {p} 4p r-- = 0"],
        "d3": [f"mmap {p} 4p rw- shared|fixed file={file} = {p}", f"write {p} 4p = 0",
               f"munmap {p} 4p = 0", f"mmap {p} 4p r-- shared|fixed file={file}:ro = {p}"],
    }[kind]  # fmt: skip
    if guard:
        lines.append(f"madvise p{page + 1} 1p guard_install = 0")
    return lines


def _content(advice: str, kind: str, letters: str, result: str, reclaimed: bool) -> str:
    """Content of one copy after the advice (and, for FREE, the PAGEOUT follow-up)."""
    base = "FFFF" if kind == "c2" else letters
    if result != "0":
        return base
    if advice in ("dontneed", "dontneed_locked"):
        if kind in ("a", "b", "b2"):
            return "0000"
        if kind in ("c", "c2", "c3"):
            return "FFFF"  # private CoW copies dropped: back to the file (rule 11)
        return base
    if advice == "free":
        return "0000" if reclaimed else "????"
    if advice == "remove":
        return "0000"  # shmem and shared files with VM_MAYWRITE lose their data
    if advice == "guard_install":
        return "####"
    if advice == "guard_remove":
        second = {"a": "0", "b": "0", "b2": "0", "c": "F", "c2": "F", "c3": "F"}.get(kind)
        return base if second is None else base[0] + second + base[2:]
    return base


def _flags(advice: str, kind: str, result: str) -> list[str]:
    if advice == "guard_remove":
        # The set-up installed a guard: VM_MAYBE_GUARD ("gu") is set then and
        # never cleared (6.18.37+, limits/G1).
        return ["gu"]
    if advice == "guard_install":
        return ["gu"] if result == "0" else []
    flag = _FLAG.get(advice)
    if flag is None or result != "0":
        return []
    if flag == "mg" and TYPES[kind][1].endswith("s"):
        return []  # KSM only takes private mappings
    return [flag]


def _run_line(
    start: int, kind: str, file: str, sealed: bool, flags: list[str], content: str
) -> str:
    perms = TYPES[kind][1]
    marks = ",".join([perms, *(["sl"] if sealed else []), *sorted(flags)])
    backing = {"anon": "anon", "shmem": "shmem@0", "file": f"file:{file}@0"}[TYPES[kind][2]]
    return f"[{start},{start + 4}) {marks} {backing} {content}"


def _scenario(advice: str, kind: str, fork: bool) -> Scenario:
    guard = advice == "guard_remove"
    lines = _setup(kind, 0, "f1", guard) + _setup(kind, 8, "f2", guard)
    lines.append("mseal p8 4p = 0")
    ctl, sealed = _result(advice, kind, False), _result(advice, kind, True)
    lines.append(f"madvise p0 4p {advice} = {ctl}")
    lines.append(f"madvise p8 4p {advice} = {sealed}  # key")
    reclaimed = advice == "free"
    if reclaimed:
        lines.append("madvise p0 4p pageout = 0")
        lines.append("madvise p8 4p pageout = 0")
    runs = []
    if fork:
        lines.append("fork = 0")
        for start, res, letters, file, is_sealed in (
            (0, ctl, "abcd", "f1", False), (8, sealed, "ijkl", "f2", True),
        ):  # fmt: skip
            if advice == "dontfork" and res == "0":
                continue  # VM_DONTCOPY: not in the child (rule 14, table "fork child")
            content = _content(advice, kind, letters, res, False)
            if advice == "wipeonfork" and res == "0":
                content = "0000"  # VM_WIPEONFORK: the child gets fresh zero pages
            runs.append(_run_line(start, kind, file, is_sealed, _flags(advice, kind, res), content))
    else:
        runs.append(_run_line(0, kind, "f1", False, _flags(advice, kind, ctl),
                              _content(advice, kind, "abcd", ctl, reclaimed)))  # fmt: skip
        runs.append(_run_line(8, kind, "f2", True, _flags(advice, kind, sealed),
                              _content(advice, kind, "ijkl", sealed, reclaimed)))  # fmt: skip
    steps = []
    for line in lines:
        step = parse_step(line)
        assert step is not None
        steps.append(step)
    layout = Layout.parse("\n".join(runs) or "(nothing mapped)", "p", 0, 16)
    suffix = "/fork-child" if fork else ""
    source = (
        f"measured case 7.1 ({kind}) {TYPES[kind][0]}: MADV_{advice.upper()}"
        + (" (fork child sees)" if fork else "")
        + (" (after follow-up MADV_PAGEOUT)" if reclaimed else "")
    )
    return Scenario(
        f"probe/7.1-{kind}/{advice}{suffix}", source, tuple(steps),
        (Check(len(steps) - 1, "p", layout),), Window(16, 16), origin="fidelity/conformance/matrix.py",
    )  # fmt: skip


def matrix_scenarios() -> list[Scenario]:
    """The 250 cells (plus 20 fork-child views), one scenario each."""
    out = []
    for kind in _ORDER:
        for advice in ADVICES:
            out.append(_scenario(advice, kind, False))
            if advice in ("wipeonfork", "dontfork"):
                out.append(_scenario(advice, kind, True))
    return out
