"""``sealkit run``: harden this interpreter, then run a program in it as ``python`` would.

::

    sealkit run [--level code|all] [--imports] [--system] [--report] script.py [args...]
    sealkit run [options] -m module [args...]
    sealkit run [options] -c code [args...]
    sealkit run [options] - [args...]          (program read from stdin)

Everything after the script, ``-m MODULE`` or ``-c CODE`` belongs to the
program, exactly as with ``python``. The program runs in this process after
:func:`sealkit.harden`: ``sys.argv``, ``sys.path[0]``, ``__main__`` and its
attributes, the exit code, ``SystemExit``, uncaught exceptions (traceback on
stderr, exit 1) and ``KeyboardInterrupt`` (traceback, then death by SIGINT)
behave as with ``python``. What differs: ``sys.orig_argv``, and sealkit's own
modules are already imported.

Only ``argparse`` is imported at module level: the dispatcher imports every
command module, and this one is on the start-up path of every program run.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType, TracebackType

from ..main import UsageError

NAME = "run"
HELP = "harden this interpreter (seal its loaded code), then run a script, -m module or -c code"
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "sealkit run [--level code|all] [--imports] [--system] [--report]\n"
        "                   (script.py | -m MODULE | -c CODE | -) [args ...]"
    )
    parser.add_argument(
        "--level",
        choices=("code", "all"),
        default="code",
        help="code: text, read-only data and RELRO (default); all: whole objects, "
        "with data, .bss and gaps",
    )
    parser.add_argument(
        "--imports",
        action="store_true",
        help="also seal extension modules and ctypes libraries loaded later, as they load",
    )
    parser.add_argument(
        "--system",
        action="store_true",
        help="also seal [vdso], [vvar] and [vvar_vclock] (breaks CRIU and rr)",
    )
    parser.add_argument(
        "--report", action="store_true", help="print what was sealed to stderr before running"
    )
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="MODULE",
        help="run a library module as a script; what follows are its arguments",
    )
    parser.add_argument(
        "-c",
        dest="code",
        nargs=argparse.REMAINDER,
        metavar="CODE",
        help="run CODE; what follows are its arguments",
    )
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="script.py | - [args]",
        help="the script (or - for stdin), then its arguments",
    )


def run(args: argparse.Namespace) -> int:
    """Harden, then run the program; returns its exit status."""
    module: list[str] | None = args.module
    code: list[str] | None = args.code
    program: list[str] = args.program
    target: _Target
    if module is not None:
        if not module:
            raise UsageError("sealkit run: argument -m: expected a module name")
        target = _ModuleTarget(module[0], module[1:] + program)
    elif code is not None:
        if not code:
            raise UsageError("sealkit run: argument -c: expected the code to run")
        target = _CodeTarget(code[0], code[1:] + program)
    elif program:
        target = (
            _StdinTarget(program[1:])
            if program[0] == "-"
            else _ScriptTarget(program[0], program[1:])
        )
    else:
        raise UsageError("sealkit run: give a script, -m MODULE or -c CODE to run")

    status = target.prepare()
    if status is not None:
        return status
    from ... import harden  # noqa: PLC0415 - after the cheap checks

    report = harden(args.level, system=args.system, imports=args.imports)
    if args.report:
        print(report, file=sys.stderr, flush=True)
    return _execute(target)


# --- running a program as python does ----------------------------------------------


class _Target:
    """One way to name a program: a script, a module, code, or stdin."""

    argv: list[str]

    def prepare(self) -> int | None:
        """Check what can be checked before hardening; an exit status stops the run."""
        return None

    def path0(self) -> str:
        """What python puts first on ``sys.path`` for this kind of program."""
        return ""

    def execute(self) -> None:
        raise NotImplementedError


def _fresh_main() -> ModuleType:
    """A new ``__main__`` laid out as CPython's ``add_main_module`` makes it."""
    import builtins  # noqa: PLC0415
    from importlib.machinery import BuiltinImporter  # noqa: PLC0415

    main = ModuleType("__main__")
    # The same names python's __main__ starts with (Python/pylifecycle.c).
    vars(main).update(__annotations__={}, __builtins__=builtins)
    main.__loader__ = BuiltinImporter
    sys.modules["__main__"] = main
    return main


class _CodeTarget(_Target):
    def __init__(self, code: str, rest: list[str]) -> None:
        self.code = code
        self.argv = ["-c", *rest]

    def execute(self) -> None:
        main = _fresh_main()
        exec(compile(self.code, "<string>", "exec", dont_inherit=True), main.__dict__)


class _StdinTarget(_Target):
    def __init__(self, rest: list[str]) -> None:
        self.argv = ["-", *rest]

    def execute(self) -> None:
        main = _fresh_main()
        main.__file__ = "<stdin>"  # as PyRun_SimpleFileExFlags sets it
        vars(main)["__cached__"] = None
        source = sys.stdin.read()
        exec(compile(source, "<stdin>", "exec", dont_inherit=True), main.__dict__)


class _ModuleTarget(_Target):
    def __init__(self, name: str, rest: list[str]) -> None:
        self.name = name
        # runpy replaces "-m" with the module's file once it has found it.
        self.argv = ["-m", *rest]

    def path0(self) -> str:
        import os  # noqa: PLC0415

        return os.getcwd()

    def execute(self) -> None:
        import runpy  # noqa: PLC0415

        _fresh_main()
        # What `python -m` itself calls (Modules/main.c pymain_run_module):
        # errors such as "No module named x" come out exactly as python's.
        runpy._run_module_as_main(self.name, alter_argv=True)  # type: ignore[attr-defined]


class _ScriptTarget(_Target):
    def __init__(self, path: str, rest: list[str]) -> None:
        self.path = path
        self.argv = [path, *rest]
        self.source: bytes = b""
        self.importer = False  # a directory or zip file with __main__.py

    def prepare(self) -> int | None:
        import os  # noqa: PLC0415
        import zipimport  # noqa: PLC0415

        if os.path.isdir(self.path):
            self.importer = True
            return None
        try:
            zipimport.zipimporter(self.path)
            self.importer = True
            return None
        except (zipimport.ZipImportError, OSError):
            pass
        import io  # noqa: PLC0415

        try:
            with io.open_code(os.path.abspath(self.path)) as fh:
                self.source = fh.read()
        except OSError as exc:
            # Modules/main.c pymain_run_file_obj: the same words, exit status 2.
            print(
                f"{sys.executable}: can't open file {os.path.abspath(self.path)!r}: "
                f"[Errno {exc.errno}] {exc.strerror}",
                file=sys.stderr,
            )
            return 2
        return None

    def path0(self) -> str:
        import os  # noqa: PLC0415

        if self.importer:
            # Python/initconfig.c config_run_filename_abspath: made absolute.
            return os.path.abspath(self.path)
        # Python/pathconfig.c _PyPathConfig_ComputeSysPath0: the directory of
        # the script with symbolic links resolved.
        return os.path.dirname(os.path.realpath(self.path))

    def execute(self) -> None:
        import os  # noqa: PLC0415

        if self.importer:
            import runpy  # noqa: PLC0415

            _fresh_main()
            runpy._run_module_as_main("__main__", alter_argv=False)  # type: ignore[attr-defined]
            return
        from importlib.machinery import SourceFileLoader, SourcelessFileLoader  # noqa: PLC0415

        filename = os.path.abspath(self.path)
        main = _fresh_main()
        main.__file__ = filename
        main.__dict__["__cached__"] = None
        if self.path.endswith(".pyc"):
            import marshal  # noqa: PLC0415

            main.__loader__ = SourcelessFileLoader("__main__", filename)
            code = marshal.loads(self.source[16:])  # 16-byte header since 3.7 (PEP 552)
        else:
            main.__loader__ = SourceFileLoader("__main__", filename)
            code = compile(self.source, filename, "exec", dont_inherit=True)
        exec(code, main.__dict__)


def _execute(target: _Target) -> int:
    """Run ``target`` in this interpreter as python's main program."""
    sys.argv[:] = target.argv
    if not sys.flags.safe_path:  # -P / -I: python prepends nothing
        if sys.path:
            sys.path[0] = target.path0()
        else:
            sys.path.insert(0, target.path0())
    import atexit  # noqa: PLC0415

    interrupted: list[bool] = []
    # Registered before the program runs so it runs after the program's own
    # atexit handlers, as Py_RunMain's exit_sigint() comes after finalization.
    atexit.register(_exit_by_sigint, interrupted)
    try:
        target.execute()
    except SystemExit:
        raise  # python's own handling: code, message on stderr, exit status
    except BaseException as exc:  # the program's uncaught exception: its traceback
        tb = _program_frames(exc.__traceback__)
        exc.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
        sys.excepthook(type(exc), exc, tb)
        if isinstance(exc, KeyboardInterrupt):
            interrupted.append(True)
        return 1
    return 0


def _program_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without this module's frames (python shows none of its own)."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def _exit_by_sigint(interrupted: list[bool]) -> None:
    """After an uncaught KeyboardInterrupt python kills itself with SIGINT, so
    that its parent (a shell) sees the interrupt (Modules/main.c exit_sigint).
    """
    if not interrupted:
        return
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream must not stop the exit
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
