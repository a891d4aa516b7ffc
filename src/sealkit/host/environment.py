"""What this machine offers for sealing: the logic behind ``sealkit check``.

:func:`check_environment` gathers, without side effects on this process
(the smaps probe seals a page in a forked child):

* the kernel release and architecture;
* whether ``mseal(2)`` is available, and why not (:func:`sealkit.support`);
* whether ``/proc/PID/smaps`` reports seals (``sl``);
* whether the system mappings ``[vdso]``, ``[vvar]``, ``[vvar_vclock]`` of
  this process are sealed (``CONFIG_MSEAL_SYSTEM_MAPPINGS``,
  security/Kconfig, Linux 6.15+);
* ``CONFIG_MSEAL_SYSTEM_MAPPINGS`` and ``CONFIG_CHECKPOINT_RESTORE`` (which
  excludes it: ``depends on !CHECKPOINT_RESTORE``) from ``/proc/config.gz``
  or ``/boot/config-RELEASE`` when readable;
* the glibc version and whether it exports an ``mseal`` wrapper (2.43+);
* this process's seccomp mode (``/proc/self/status``);
* sealkit's optional components (:data:`COMPONENTS`): whether each is
  present, and what is lost without it. ``pip install -q`` hides a failed
  build of the C fast path: this is where a user finds out. Among them
  ``libsealexec.so``, the library of ``sealkit exec``, built at install time
  when a C compiler is there (also in the report as ``exec_library``).

:data:`REQUIREMENTS` names what ``--require`` can demand; :func:`unmet`
says why a requirement does not hold, in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Final

from .._os import procfs, sealexec, syscalls
from .._os.support import support
from ..errors import ArgumentError, ArgumentTypeError, SealkitError

__all__ = [
    "COMPONENTS",
    "REQUIREMENTS",
    "SYSTEM_MAPPINGS",
    "Component",
    "EnvironmentReport",
    "check_environment",
    "unmet",
]

SYSTEM_MAPPINGS: Final = ("[vdso]", "[vvar]", "[vvar_vclock]")
"""The mappings ``CONFIG_MSEAL_SYSTEM_MAPPINGS`` seals on x86-64 (arch/x86/entry/vdso/vma.c)."""

_SECCOMP_MODES: Final = {0: "disabled", 1: "strict", 2: "filter"}


@dataclass(frozen=True, slots=True)
class Component:
    """A part of sealkit that an installation may lack.

    ``key`` names it for ``--require``; ``title`` is the row ``sealkit
    check`` shows; ``present`` says whether this process has it; ``detail``
    says where it was found, or why not and how to get it; ``without`` says
    what is lost without it (shown either way, so the table explains itself).
    """

    key: str
    title: str
    present: bool
    detail: str
    without: str


def _fast_path() -> Component:
    present = syscalls.FAST_PATH
    detail = syscalls.FAST_PATH_DETAIL
    if not present and not detail.startswith(("switched off", "not used")):
        detail += (
            "; it is built at install time when a C compiler and the Python headers are "
            "there (apt install gcc python3-dev), then `pip install -e .` again "
            "(pip -v shows the compiler's error)"
        )
    return Component(
        key="fast-path",
        title="C fast path (sealkit._os._fastsys)",
        present=present,
        detail=detail,
        without=(
            "system calls go through ctypes, about 1 us more per call "
            "(benchmarks/bench_mseal.py); harden() walks the loaded objects from Python, "
            "where a thread switch during the walk can deadlock against a concurrent import "
            "(made unlikely, not impossible), and re-checks each range with PROCMAP_QUERY "
            "microseconds before sealing it instead of under the dynamic loader's lock"
        ),
    )


def _exec_library() -> Component:
    path = sealexec.library_path()
    return Component(
        key="exec",
        title="sealkit exec library (libsealexec.so)",
        present=path is not None,
        detail=path
        if path is not None
        else (
            "not built (no C compiler at install time); it is built at install time when a "
            "C compiler is there (apt install gcc), then `pip install -e .` again"
        ),
        without=(
            "`sealkit exec` cannot seal other programs: it says so in one line and exits 2 "
            "(harden() and `sealkit run` do not need it)"
        ),
    )


COMPONENTS: Final[list[Callable[[], Component]]] = [_fast_path, _exec_library]
"""One probe per optional component, in the order ``sealkit check`` shows
them; a new component adds its probe here, and its ``--require`` entry to
:data:`REQUIREMENTS` (``_need_component(KEY)``)."""


@dataclass(frozen=True, slots=True)
class EnvironmentReport:
    """Everything ``sealkit check`` shows; :meth:`to_json` carries all of it.

    Config values are ``"y"``, ``"m"``, ``"n"`` (``# ... is not set``),
    ``"absent"`` (not in the config: its dependencies are unmet) or ``None``
    (no readable config). ``system_mappings`` maps each present system
    mapping to whether it is sealed in this process.
    """

    kernel_release: str
    arch: str
    mseal_available: bool
    mseal_errno: int | None
    mseal_reason: str
    smaps_reports_seals: bool | None
    smaps_detail: str
    system_mappings: dict[str, bool]
    system_mappings_sealed: bool | None
    kernel_config_source: str | None
    config_mseal_system_mappings: str | None
    config_checkpoint_restore: str | None
    config_note: str
    glibc_version: str | None
    glibc_mseal_wrapper: bool
    seccomp_mode: int | None
    seccomp_mode_name: str | None
    seccomp_filters: int | None
    exec_library: str | None
    exec_library_detail: str
    components: tuple[Component, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict with every field."""
        return asdict(self)


def _config_note(mseal_sysmap: str | None, checkpoint: str | None) -> str:
    if mseal_sysmap is None:
        return "no readable kernel config (/proc/config.gz or /boot/config-RELEASE)"
    if mseal_sysmap == "y":
        return "system mappings are sealed at exec"
    if mseal_sysmap == "absent" and checkpoint == "y":
        return (
            "CONFIG_MSEAL_SYSTEM_MAPPINGS depends on !CHECKPOINT_RESTORE, "
            "and CONFIG_CHECKPOINT_RESTORE=y (CRIU needs to move the vDSO)"
        )
    if mseal_sysmap == "absent":
        return "CONFIG_MSEAL_SYSTEM_MAPPINGS is not offered by this kernel (Linux < 6.15 or unsupported arch)"
    return "CONFIG_MSEAL_SYSTEM_MAPPINGS is not set"


def check_environment(procfs_root: str = "/proc", boot: str = "/boot") -> EnvironmentReport:
    """Gather the :class:`EnvironmentReport` for this process and kernel."""
    info = support()
    system: dict[str, bool] = {}
    for vma in procfs.read_smaps("self", procfs_root):
        if vma.path in SYSTEM_MAPPINGS:
            system[vma.path] = bool(vma.sealed) and system.get(vma.path, True)
    sysmap_sealed = all(system.values()) if system else None

    found = procfs.read_kernel_config(info.kernel, procfs_root, boot)
    if found is None:
        source, mseal_sysmap, checkpoint = None, None, None
    else:
        config, source = found
        mseal_sysmap = config.get("CONFIG_MSEAL_SYSTEM_MAPPINGS", "absent")
        checkpoint = config.get("CONFIG_CHECKPOINT_RESTORE", "absent")

    try:
        status = procfs.read_status("self", procfs_root)
    except SealkitError:
        status = {}
    mode_text = status.get("Seccomp", "")
    filters_text = status.get("Seccomp_filters", "")
    mode = int(mode_text) if mode_text.isdigit() else None
    exec_library = sealexec.library_path()
    return EnvironmentReport(
        kernel_release=info.kernel,
        arch=info.arch,
        mseal_available=info.available,
        mseal_errno=info.errno,
        mseal_reason=info.reason,
        smaps_reports_seals=info.smaps_reports_seals,
        smaps_detail=info.smaps_detail,
        system_mappings=system,
        system_mappings_sealed=sysmap_sealed,
        kernel_config_source=source,
        config_mseal_system_mappings=mseal_sysmap,
        config_checkpoint_restore=checkpoint,
        config_note=_config_note(mseal_sysmap, checkpoint),
        glibc_version=syscalls.libc_version(),
        glibc_mseal_wrapper=syscalls.libc_has_symbol("mseal"),
        seccomp_mode=mode,
        seccomp_mode_name=_SECCOMP_MODES.get(mode, None) if mode is not None else None,
        seccomp_filters=int(filters_text) if filters_text.isdigit() else None,
        exec_library=exec_library,
        exec_library_detail=_exec_library_detail(exec_library),
        components=tuple(probe() for probe in COMPONENTS),
    )


def _exec_library_detail(path: str | None) -> str:
    if path is None:
        return "not built (no C compiler at install time): sealkit exec is unavailable"
    return f"{path}: sealkit exec can seal dynamically linked glibc programs"


def _need_mseal(r: EnvironmentReport) -> str | None:
    return None if r.mseal_available else r.mseal_reason


def _need_smaps(r: EnvironmentReport) -> str | None:
    if r.smaps_reports_seals:
        return None
    return f"/proc/PID/smaps does not show seals: {r.smaps_detail}"


def _need_sysmap(r: EnvironmentReport) -> str | None:
    if r.system_mappings_sealed:
        return None
    if not r.system_mappings:
        return "no system mappings ([vdso], [vvar]) in this process"
    unsealed = ", ".join(name for name, sealed in r.system_mappings.items() if not sealed)
    return f"system mappings not sealed in this process: {unsealed} ({r.config_note})"


def _need_sysmap_config(r: EnvironmentReport) -> str | None:
    if r.config_mseal_system_mappings == "y":
        return None
    value = r.config_mseal_system_mappings or "unknown"
    return f"CONFIG_MSEAL_SYSTEM_MAPPINGS is {value}: {r.config_note}"


def _need_glibc(r: EnvironmentReport) -> str | None:
    if r.glibc_mseal_wrapper:
        return None
    return f"libc exports no mseal() wrapper (glibc {r.glibc_version or 'absent'}; 2.43+ has one)"


def _need_no_seccomp(r: EnvironmentReport) -> str | None:
    if r.seccomp_mode == 0:
        return None
    return f"this process runs under seccomp mode {r.seccomp_mode_name or r.seccomp_mode}"


def _need_exec(r: EnvironmentReport) -> str | None:
    if r.exec_library is None:
        return f"libsealexec.so {r.exec_library_detail}"
    return None if r.mseal_available else r.mseal_reason


def _need_component(key: str) -> Callable[[EnvironmentReport], str | None]:
    def need(r: EnvironmentReport) -> str | None:
        for component in r.components:
            if component.key == key:
                return None if component.present else f"{component.title}: {component.detail}"
        return f"no component {key!r} in this report"

    return need


REQUIREMENTS: Final[dict[str, tuple[str, Callable[[EnvironmentReport], str | None]]]] = {
    "mseal": ("mseal(2) is available to this process", _need_mseal),
    "smaps-sl": ("/proc/PID/smaps reports seals as 'sl'", _need_smaps),
    "sysmap-sealed": ("[vdso]/[vvar] are sealed in this process", _need_sysmap),
    "sysmap-config": ("CONFIG_MSEAL_SYSTEM_MAPPINGS=y", _need_sysmap_config),
    "glibc-mseal": ("libc exports an mseal() wrapper", _need_glibc),
    "no-seccomp": ("no seccomp filter on this process", _need_no_seccomp),
    "fast-path": ("the C fast path is built and in use", _need_component("fast-path")),
    "exec": ("sealkit exec can seal here (libsealexec.so built, mseal available)", _need_exec),
}
"""``--require`` names: ``name -> (what it means, check returning why not or None)``."""


def unmet(report: EnvironmentReport, name: str) -> str | None:
    """Why requirement ``name`` does not hold for ``report``, or ``None`` if it does."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"requirement must be a str, not {type(name).__name__}")
    if not isinstance(report, EnvironmentReport):
        raise ArgumentTypeError(f"report must be an EnvironmentReport, not {type(report).__name__}")
    try:
        _, check = REQUIREMENTS[name]
    except KeyError:
        raise ArgumentError(
            f"unknown requirement {name!r} (known: {', '.join(REQUIREMENTS)})"
        ) from None
    return check(report)
