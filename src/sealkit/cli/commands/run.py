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
behave as with ``python``. What a Python-level launcher cannot match (its
frames on the stack, 7 to 10 fewer recursion levels, preloaded modules,
``compile()``'s wording for undecodable script files, ``sys.orig_argv``) is
listed in docs/hardening.md, "Differences from python".

The process is named after the program (``/proc/PID/comm``: the script's
file name, the module's name, or the interpreter's for ``-c`` and stdin), so
``ps``, ``top``, ``sealkit audit`` and its Prometheus series show the program
rather than ``sealkit``; ``/proc/PID/cmdline`` stays what was run.

Where sealing is impossible (a kernel without mseal, a seccomp filter that
refuses it) the run stops before the program starts, with one line that
says why (as ``sealkit check`` explains it), exit code 1; with
``--if-supported`` the program runs unsealed after one warning line.

Only ``argparse`` is imported at module level: the dispatcher imports every
command module, and this one is on the start-up path of every program run.
"""

from __future__ import annotations

import argparse
import sys
from types import CodeType, ModuleType, TracebackType
from typing import Any

from ..main import EXIT_FAILED, UsageError

NAME = "run"
HELP = "harden this interpreter (seal its loaded code), then run a script, -m module or -c code"
ORDER = 60
PROGRAM_OWNS_STDOUT = True  # the program's output is its own: python's rules at exit

# sealkit's own options that take a value (split_args must skip the value).
_VALUE_OPTIONS = ("--level", "--width")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "sealkit run [--level code|all] [--imports] [--system] [--report[=json]]\n"
        "                   [--if-supported] (script.py | -m MODULE | -c CODE | -) [args ...]"
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
        "--report",
        nargs="?",
        const="text",
        choices=("text", "json"),
        help="print what was sealed to stderr before running; --report=json: one line of "
        "JSON (schema: sealkit/data/run.schema.json)",
    )
    parser.add_argument(
        "--if-supported",
        action="store_true",
        help="where mseal is unavailable (old kernel, seccomp), run the program unsealed "
        "after one warning line on stderr instead of failing",
    )
    # The program and its arguments never reach argparse (split_args takes
    # them off first); these three entries only describe them in --help.
    parser.add_argument(
        "-m",
        dest="_help_module",
        metavar="MODULE",
        help="run a library module as a script; what follows are its arguments",
    )
    parser.add_argument(
        "-c", dest="_help_code", metavar="CODE", help="run CODE; what follows are its arguments"
    )
    parser.add_argument(
        "_help_program",
        nargs="?",
        metavar="script.py | - [args]",
        help="the script (or - for stdin), then its arguments",
    )


def split_args(words: list[str]) -> tuple[list[str], list[str]]:
    """sealkit's own words and the program's: the program starts at the first
    program selector (a script, ``-``, ``-c``/``-cCODE``, ``-m``/``-mMOD``).

    As with ``python`` (Python/getopt.c: ``-c`` and ``-m`` end option
    parsing), nothing after the selector is sealkit's, whatever it looks like;
    argparse's REMAINDER cannot do this for attached ``-cCODE``/``-mMOD``.
    ``--`` ends sealkit's options: the next word is the script.
    """
    at = 0
    while at < len(words):
        word = words[at]
        if word in {"--", "-"} or not word.startswith("-") or word.startswith(("-c", "-m")):
            break
        if "=" not in word and len(word) > 2 and any(o.startswith(word) for o in _VALUE_OPTIONS):
            at += 1  # the option's value (argparse accepts unique prefixes)
        at += 1
    return words[:at], words[at:]


def _target(program: list[str]) -> _Target:
    """The program named by the words after sealkit's own options."""
    if not program:
        raise UsageError("sealkit run: give a script, -m MODULE or -c CODE to run")
    first, rest = program[0], program[1:]
    for flag, what in (("-m", "a module name"), ("-c", "the code to run")):
        if first.startswith(flag):
            value = first[2:]
            if first == flag:
                if not rest:
                    raise UsageError(f"sealkit run: argument {flag}: expected {what}")
                value, rest = rest[0], rest[1:]
            return _ModuleTarget(value, rest) if flag == "-m" else _CodeTarget(value, rest)
    if first == "--":
        if not rest:
            raise UsageError("sealkit run: give a script, -m MODULE or -c CODE to run")
        first, rest = rest[0], rest[1:]
    return _StdinTarget(rest) if first == "-" else _ScriptTarget(first, rest)


def run(args: argparse.Namespace) -> int:
    """Harden, then run the program; returns its exit status."""
    # main() puts what split_args found to be the program's in `passthrough`.
    target = _target(getattr(args, "passthrough", []))
    status = target.prepare()
    if status is not None:
        return status
    from ... import harden  # noqa: PLC0415 - after the cheap checks
    from ...errors import NotSupportedError, SealingDeniedError  # noqa: PLC0415

    try:
        report = harden(args.level, system=args.system, imports=args.imports)
    except (NotSupportedError, SealingDeniedError) as exc:
        why = _unsupported(exc)
        if not args.if_supported:
            print(
                f"sealkit run: cannot seal, the program was not started: {why} "
                "(`sealkit check` shows what this machine allows; --if-supported runs "
                "the program unsealed)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(f"sealkit run: warning: running unsealed (--if-supported): {why}", file=sys.stderr)
        if args.report == "json":
            _print_json_report(target, None, why)
    else:
        if args.report == "json":
            _print_json_report(target, report.as_dict(), None)
        elif args.report:
            print(report, file=sys.stderr, flush=True)
    _name_process(target)
    return _execute(target)


def _unsupported(exc: BaseException) -> str:
    """Why sealing is impossible here, in ``sealkit check``'s words."""
    from ... import support  # noqa: PLC0415

    info = support()
    return info.reason if not info.available else str(exc)


def _print_json_report(target: _Target, report: dict[str, Any] | None, why: str | None) -> None:
    """The report as one line of JSON on stderr (stdout is the program's)."""
    import json  # noqa: PLC0415

    doc = {
        "schema": "sealkit.run/1",
        "program": target.argv,
        "hardened": report is not None,
        "unsupported": why,
        "report": report,
    }
    print(json.dumps(doc, separators=(",", ":")), file=sys.stderr, flush=True)


def _name_process(target: _Target) -> None:
    """Name the process after the program (``/proc/PID/comm``)."""
    import os  # noqa: PLC0415

    from ...sealing.hardening import set_process_name  # noqa: PLC0415

    try:
        set_process_name(os.fsencode(target.process_name())[:15])
    except Exception:  # a name is a courtesy: never a reason not to run the program
        pass


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

    def process_name(self) -> str:
        """The process's name while the program runs: what ``python`` itself
        would be called, unless the program has a name of its own."""
        import os  # noqa: PLC0415

        return os.path.basename(sys.orig_argv[0] if sys.orig_argv else sys.executable) or "python"


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
        # Bytes, as python's file tokenizer reads them: compile() then honours
        # a BOM and a coding cookie itself.
        import os  # noqa: PLC0415

        stdin = sys.stdin.buffer
        try:
            os.lseek(stdin.fileno(), 0, os.SEEK_CUR)
            seekable = True
        except OSError:  # a pipe or terminal
            seekable = False
        source = stdin.read()
        message = _stdin_source_error(source, seekable)
        if message is not None:
            raise SyntaxError(message)
        exec(compile(source, "<stdin>", "exec", dont_inherit=True), main.__dict__)


def _stdin_source_error(source: bytes, seekable: bool) -> str | None:
    """The SyntaxError message python gives for a program on stdin where
    ``compile()`` of the bytes would not give the same, or None.

    Python reads stdin with its file tokenizer (Parser/tokenizer.c): source
    with no BOM and no coding cookie must be UTF-8 (ensure_utf8; compile()
    checks only string literals); a cookie naming another encoding makes it
    re-open the file at its offset (fp_setreadl), which fails on a pipe; an
    unknown encoding or one beside a BOM fails too. These errors carry no
    file and line, so python prints the message alone.
    """
    import codecs  # noqa: PLC0415

    bom = source.startswith(codecs.BOM_UTF8)
    # Universal newlines, as the tokenizer reads; a BOM is not part of line 1.
    lines = source[len(codecs.BOM_UTF8) if bom else 0 :].splitlines()
    cookie = None
    if b"coding" in b"\n".join(lines[:2]):
        import tokenize  # noqa: PLC0415

        for line in lines[:2]:  # PEP 263: line 1, or line 2 after a comment/blank
            found = tokenize.cookie_re.match(line.decode("latin-1"))
            if found:
                cookie = tokenize._get_normal_name(found.group(1))  # type: ignore[attr-defined]
                break
            if not tokenize.blank_re.match(line):
                break
    if cookie is not None and cookie != "utf-8":
        if bom:
            return f"encoding problem: {cookie} with BOM"
        try:
            codecs.lookup(cookie)
        except LookupError:
            return f"encoding problem: {cookie}"
        return None if seekable else f"encoding problem: {cookie}"
    if cookie is not None or bom:
        return None
    try:
        source.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    for lineno, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")  # as strict as the tokenizer's valid_utf8 in 3.11
        except UnicodeDecodeError as exc:
            return (
                f"Non-UTF-8 code starting with '\\x{line[exc.start]:02x}' in file <stdin> "
                f"on line {lineno}, but no encoding declared; "
                "see https://peps.python.org/pep-0263/ for details"
            )
    return None


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

    def process_name(self) -> str:
        return self.name


def _run_filename(path: str) -> str:
    """The script's name as python uses it for ``__file__``, code objects,
    tracebacks and errors: Python/initconfig.c config_run_filename_abspath
    with Python/fileutils.c _Py_abspath, which joins the current directory
    and the path without normalising (``./x.py`` stays ``/cwd/./x.py``)."""
    import os  # noqa: PLC0415

    if path.startswith("/"):
        return path
    try:
        cwd = os.getcwd()
    except OSError:  # python keeps the relative path then
        return path
    return cwd if path in ("", ".") else cwd + "/" + path


class _ScriptTarget(_Target):
    def __init__(self, path: str, rest: list[str]) -> None:
        self.path = path  # sys.argv[0] stays as given
        self.filename = _run_filename(path)
        self.argv = [path, *rest]
        self.source: bytes = b""
        self.pyc = False
        self.importer = False  # a directory or zip file with __main__.py

    def prepare(self) -> int | None:
        import io  # noqa: PLC0415
        import os  # noqa: PLC0415
        import zipimport  # noqa: PLC0415

        if os.path.isdir(self.filename):
            self.importer = True
            return None
        try:
            zipimport.zipimporter(self.filename)
            self.importer = True
            return None
        except (zipimport.ZipImportError, OSError):
            pass
        try:
            with io.open_code(self.filename) as fh:
                self.source = fh.read()
        except OSError as exc:
            # Modules/main.c pymain_run_file_obj: the same words, exit status 2,
            # naming the interpreter as it was invoked (config->program_name).
            print(
                f"{sys.orig_argv[0]}: can't open file {self.filename!r}: "
                f"[Errno {exc.errno}] {exc.strerror}",
                file=sys.stderr,
            )
            return 2
        from importlib.util import MAGIC_NUMBER  # noqa: PLC0415

        # Python/pythonrun.c maybe_pyc_file: the name, or the magic's first two bytes.
        self.pyc = self.filename.endswith(".pyc") or self.source[:2] == MAGIC_NUMBER[:2]
        return None

    def path0(self) -> str:
        import os  # noqa: PLC0415

        if self.importer:
            # pymain_run_python: the importer's path is config->run_filename.
            return self.filename
        # Python/pathconfig.c _PyPathConfig_ComputeSysPath0: the directory of
        # the script with symbolic links resolved.
        return os.path.dirname(os.path.realpath(self.path))

    def process_name(self) -> str:
        import os  # noqa: PLC0415

        return os.path.basename(self.filename.rstrip("/")) or super().process_name()

    def execute(self) -> None:
        if self.importer:
            import runpy  # noqa: PLC0415

            _fresh_main()
            runpy._run_module_as_main("__main__", alter_argv=False)  # type: ignore[attr-defined]
            return
        from importlib.machinery import SourceFileLoader, SourcelessFileLoader  # noqa: PLC0415

        main = _fresh_main()
        main.__file__ = self.filename
        main.__dict__["__cached__"] = None
        if self.pyc:
            main.__loader__ = SourcelessFileLoader("__main__", self.filename)
            code = _pyc_code(self.source)
        else:
            main.__loader__ = SourceFileLoader("__main__", self.filename)
            code = compile(self.source, self.filename, "exec", dont_inherit=True)
        exec(code, main.__dict__)


def _pyc_code(data: bytes) -> CodeType:
    """The code object of a .pyc file, with python's errors (Python/pythonrun.c
    run_pyc_file): the full magic number is checked, then a 16-byte header
    (PEP 552) is skipped and the rest must unmarshal to a code object."""
    import marshal  # noqa: PLC0415
    from importlib.util import MAGIC_NUMBER  # noqa: PLC0415

    if data[:4] != MAGIC_NUMBER:  # a short read too: PyMarshal_ReadLongFromFile gives -1
        raise RuntimeError("Bad magic number in .pyc file")
    if len(data) < 16:
        raise EOFError("EOF read where not expected")
    try:
        code = marshal.loads(data[16:])
    except Exception:
        code = None
    if not isinstance(code, CodeType):
        raise RuntimeError("Bad code object in .pyc file")
    return code


def _execute(target: _Target) -> int:
    """Run ``target`` in this interpreter as python's main program."""
    sys.argv[:] = target.argv
    if not sys.flags.safe_path:  # -P / -I: python prepends nothing
        if sys.path:
            sys.path[0] = target.path0()
        else:
            sys.path.insert(0, target.path0())
    import atexit  # noqa: PLC0415

    interrupted: list[str] = []
    # Registered before the program runs so that it runs after the program's own
    # atexit handlers, as Py_RunMain's exit_sigint() comes after finalisation.
    atexit.register(_at_last, interrupted)
    uncaught: BaseException | None = None
    try:
        target.execute()
    except SystemExit:
        raise  # python's own handling: code, message on stderr, exit status
    except BaseException as exc:  # the program's uncaught exception: its traceback
        uncaught = exc
    if uncaught is None:
        return 0
    # Outside the except block, as python calls the hook: no exception is being
    # handled, so sys.exc_info() is empty and a failing hook's error has no context.
    _print_uncaught(uncaught)
    if isinstance(uncaught, KeyboardInterrupt):
        return _arm_sigint_exit(interrupted)
    return 1


def _program_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without this module's frames (python shows none of its own)."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def _print_uncaught(exc: BaseException) -> None:
    """Show the uncaught exception as Python/pythonrun.c _PyErr_PrintEx does:
    through sys.excepthook, and if the hook fails or is missing, through the
    built-in display (``sys.__excepthook__`` is PyErr_Display) with its words."""
    tb = _program_frames(exc.__traceback__)
    exc.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    missing = object()
    hook = getattr(sys, "excepthook", missing)
    if hook is missing:
        sys.stderr.write("sys.excepthook is missing\n")
        sys.__excepthook__(type(exc), exc, tb)
        return
    failure: BaseException | None = None
    try:
        hook(type(exc), exc, tb)  # type: ignore[operator]
    except SystemExit:
        raise  # handle_system_exit(): the hook's SystemExit ends the process
    except BaseException as hook_exc:
        failure = hook_exc
    if failure is None:
        return
    failure_tb = _program_frames(failure.__traceback__)
    sys.stdout.flush()
    sys.stderr.write("Error in sys.excepthook:\n")
    sys.__excepthook__(type(failure), failure.with_traceback(failure_tb), failure_tb)
    sys.stderr.write("\nOriginal exception was:\n")
    sys.__excepthook__(type(exc), exc, tb)


def _arm_sigint_exit(interrupted: list[str]) -> int:
    """After an uncaught KeyboardInterrupt python finalises, then kills itself
    with SIGINT so that its parent (a shell) sees the interrupt (Modules/main.c
    Py_RunMain, exit_sigint). A Python-level launcher cannot run code after
    finalisation (atexit, flushing files, ``__del__``, module teardown), but
    libc's exit handlers run after it: ``on_exit(raise, NULL)`` calls
    ``raise(status)``, and the status returned here is SIGINT's number.

    Returns the exit status to leave with. Without ``on_exit`` (not glibc) the
    kill happens in the last atexit handler instead, skipping finalisation.
    """
    import signal  # noqa: PLC0415

    from ...sealing.hardening import raise_exit_status_at_exit  # noqa: PLC0415

    if raise_exit_status_at_exit():
        interrupted.append("default")
        return int(signal.SIGINT)
    interrupted.append("kill")
    return 1


def _at_last(interrupted: list[str]) -> None:
    """The last atexit handler (registered before the program's own): after an
    uncaught KeyboardInterrupt, SIGINT's disposition back to SIG_DFL as
    exit_sigint() sets it before its kill; and the kill itself when libc has no
    ``on_exit``."""
    if not interrupted:
        return
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if interrupted[-1] != "kill":
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream must not stop the exit
            pass
    os.kill(os.getpid(), signal.SIGINT)
