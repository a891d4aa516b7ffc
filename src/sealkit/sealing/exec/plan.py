"""How a program is run sealed: the environment that asks the loader for it, and the plan.

The loader loads ``libsealexec.so`` because of two variables, ``LD_AUDIT``
(the audit instance, which seals) and ``LD_PRELOAD`` (the ``dlopen``
wrapper); ``SEALKIT_EXEC_*`` variables carry the options. Nothing else of
the environment changes. :func:`plan` decides, before the exec, whether that
can work for a program, and refuses in one line or warns when it cannot.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from ..._os import sealexec
from ...errors import ArgumentError, ArgumentTypeError, KernelError
from .program import ExecRefused, Program, inspect_program, resolve_program

__all__ = [
    "ENV_PREFIX",
    "LEVELS",
    "NO_LIBRARY",
    "ExecPlan",
    "environment",
    "exec_environment",
    "library_path",
    "mseal_errno",
    "plan",
    "report_target",
]

LEVELS: Final = ("code", "all")
ENV_PREFIX: Final = "SEALKIT_EXEC_"
NO_LIBRARY: Final = (
    "sealkit exec: libsealexec.so was not built when sealkit was installed "
    "(no C compiler then): install gcc and reinstall sealkit"
)
_MAX_REPORT_PATH: Final = 480  # the library keeps 512 bytes, and %p expands


def library_path() -> str | None:
    """The installed ``libsealexec.so`` (absolute path), or ``None`` when it
    was not built (no C compiler at install time)."""
    return sealexec.library_path()


def mseal_errno() -> int:
    """0 when ``mseal(2)`` works for this process, else the errno of
    ``mseal(0, 0, 0)`` (ENOSYS: kernel before 6.10 or 32-bit; EPERM: a
    seccomp filter). A program started from here inherits the filter."""
    from ..._os import syscalls  # noqa: PLC0415 - loads libc: only on the way to an exec

    try:
        syscalls.mseal(0, 0, 0)
    except KernelError as exc:
        return exc.errno or 0
    return 0


def _append(value: str | None, lib: str) -> str:
    """``value`` (an ``LD_AUDIT``/``LD_PRELOAD`` list) with ``lib`` appended once.

    Appended, not prepended: a sanitizer runtime must stay first in
    ``LD_PRELOAD`` (ASan refuses to run otherwise), and the order among
    preloads decides only which ``dlopen`` definition a call reaches first."""
    parts = [p for p in (value or "").replace(" ", ":").split(":") if p]
    return ":".join([*(p for p in parts if p != lib), lib])


def environment(
    lib: str,
    *,
    level: str = "code",
    marked_only: bool = False,
    inherit: bool = True,
    require: bool = False,
    report: str | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables that ask the loader to seal: ``base`` with ours merged
    in (``base=None``: only ours, as ``sealkit exec --print-env`` prints them).

    ``report`` is what :func:`report_target` returns (an absolute path, or
    ``fd:N``). Any ``SEALKIT_EXEC_*`` variable of ``base`` is dropped first.
    """
    if level not in LEVELS:
        raise ArgumentError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    for name, value in (("marked_only", marked_only), ("inherit", inherit), ("require", require)):
        if not isinstance(value, bool):
            raise ArgumentTypeError(f"{name} must be a bool, not {type(value).__name__}")
    if ":" in lib or " " in lib or not os.path.isabs(lib):
        raise ExecRefused(
            f"sealkit exec: the library path {lib!r} contains ':' or a space, or is relative, "
            "which LD_PRELOAD and LD_AUDIT cannot express: install sealkit under another path",
            2,
        )
    env = {k: v for k, v in (base or {}).items() if not k.startswith(ENV_PREFIX)}
    env["LD_AUDIT"] = _append(env.get("LD_AUDIT"), lib)
    env["LD_PRELOAD"] = _append(env.get("LD_PRELOAD"), lib)
    env[ENV_PREFIX + "LIB"] = lib
    env[ENV_PREFIX + "LEVEL"] = level
    if marked_only:
        env[ENV_PREFIX + "MARKED_ONLY"] = "1"
    if not inherit:
        env[ENV_PREFIX + "INHERIT"] = "0"
    if require:
        env[ENV_PREFIX + "REQUIRE"] = "1"
    if report is not None:
        env[ENV_PREFIX + "REPORT"] = report
    return env


def report_target(value: str, *, check_fd: bool = True) -> str:
    """Check a ``--report`` value: ``fd:N`` (an open descriptor, never 0-2)
    or a file path (its directory must exist; ``%p`` becomes the PID).
    Returns what the library reads: ``fd:N`` or an absolute path.

    ``check_fd=False`` (``--print-env``) does not require the descriptor to
    be open here: the service manager opens it.
    """
    if value.startswith("fd:"):
        try:
            fd = int(value[3:])
        except ValueError:
            raise ExecRefused(
                f"sealkit exec: --report {value}: not a file descriptor number", 2
            ) from None
        if fd <= 2:
            raise ExecRefused(
                f"sealkit exec: --report fd:{fd}: the report never goes to the program's "
                "stdin, stdout or stderr",
                2,
            )
        if check_fd:
            try:
                os.fstat(fd)
            except OSError:
                raise ExecRefused(
                    f"sealkit exec: --report fd:{fd}: not an open file descriptor", 2
                ) from None
            os.set_inheritable(fd, True)
        return f"fd:{fd}"
    if not value or "\0" in value:
        raise ExecRefused("sealkit exec: --report needs a file path or fd:N", 2)
    path = os.path.abspath(value)
    if len(os.fsencode(path)) > _MAX_REPORT_PATH:
        raise ExecRefused(f"sealkit exec: --report path longer than {_MAX_REPORT_PATH} bytes", 2)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ExecRefused(f"sealkit exec: --report {value}: directory {parent} does not exist", 2)
    if check_fd:  # the program runs here, as this user: it must be able to write the report
        why = _unwritable(path, parent)
        if why:
            raise ExecRefused(f"sealkit exec: --report {value}: {why}", 2)
    return path


def _unwritable(path: str, parent: str) -> str | None:
    """Why the library, running as this user, could not write the report
    ``path`` (a temporary file in ``parent``, renamed over ``path``): the
    library has no way to say so once the program runs."""
    if not os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
        return f"directory {parent} is not writable (the report is written there and renamed)"
    if "%p" in path:
        return None
    try:
        found = os.lstat(path)
        folder = os.stat(parent)
    except OSError:
        return None
    uid = os.geteuid()
    if uid in (0, found.st_uid, folder.st_uid):
        return None
    if folder.st_mode & stat.S_ISVTX:
        # rename(2) over another user's file in a sticky directory is EPERM
        return (
            f"it belongs to another user (uid {found.st_uid}) in a sticky directory, "
            "so it cannot be replaced: choose another name (or r-%p.jsonl)"
        )
    return None


class ExecPlan(NamedTuple):
    """What ``sealkit exec`` will run: ``path`` with ``argv`` and ``env``;
    ``sealed`` says whether the library is asked for; ``warnings`` are
    printed (one line each) before the exec."""

    path: str
    argv: list[str]
    env: dict[str, str]
    program: Program
    sealed: bool
    warnings: list[str]


def plan(
    argv: Sequence[str],
    *,
    level: str = "code",
    marked_only: bool = False,
    inherit: bool = True,
    require_sealed: bool = False,
    report: str | None = None,
    base_env: Mapping[str, str] | None = None,
    lib: str | None = None,
) -> ExecPlan:
    """Decide how to run ``argv``; raises :class:`ExecRefused` with a one-line
    message and the exit status when it must not run.

    A program that cannot be sealed (see :mod:`.program`, or ``mseal(2)``
    unavailable here) runs unsealed after a one-line warning, without
    sealkit's variables; with ``require_sealed`` it is refused (status 1).
    """
    env_in = dict(os.environ if base_env is None else base_env)
    if not argv:
        raise ExecRefused("sealkit exec: give the program to run after --", 2)
    library = lib if lib is not None else library_path()
    if library is None:
        raise ExecRefused(NO_LIBRARY, 2)
    path = resolve_program(argv[0], env_in)
    program = inspect_program(path)
    why_not = None if program.sealable else program.detail
    if why_not is None:
        err = mseal_errno()
        if err:
            why_not = f"{program.path}: mseal(2) is not available here ({os.strerror(err)})"
    if why_not is not None:
        if require_sealed:
            raise ExecRefused(f"sealkit exec: {why_not} (--require sealed)", 1)
        warning = f"sealkit exec: warning: {why_not}: running it unsealed"
        return ExecPlan(path, list(argv), env_in, program, False, [warning])
    target = report_target(report) if report is not None else None
    env = environment(
        library,
        level=level,
        marked_only=marked_only,
        inherit=inherit,
        require=require_sealed,
        report=target,
        base=env_in,
    )
    return ExecPlan(path, list(argv), env, program, True, [])


def exec_environment(
    base: Mapping[str, str] | None = None,
    *,
    level: str = "code",
    marked_only: bool = False,
    inherit: bool = True,
    require: bool = False,
    report: str | None = None,
) -> dict[str, str]:
    """The environment in which a dynamically linked glibc program started
    with it (``subprocess.Popen(argv, env=...)``) has its loaded code sealed,
    as under ``sealkit exec``: ``base`` (default ``os.environ``) plus the
    loader variables and ``SEALKIT_EXEC_*`` options.

    Unlike ``sealkit exec`` this does not look at the program: a static,
    set-user-ID or musl program simply runs unsealed (``inspect_program``
    says which). ``report``: a file path (``%p`` for the PID) or ``fd:N``.
    Raises :class:`ExecRefused` when the library was not built.
    """
    lib = library_path()
    if lib is None:
        raise ExecRefused(NO_LIBRARY, 2)
    target = None if report is None else report_target(report, check_fd=False)
    return environment(
        lib,
        level=level,
        marked_only=marked_only,
        inherit=inherit,
        require=require,
        report=target,
        base=os.environ if base is None else base,
    )
