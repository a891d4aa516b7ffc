"""``sealkit run``: the program behaves exactly as under ``python``, hardened.

Differential: each program runs as ``python ARGS`` and as ``python -m
sealkit run ARGS``, and stdout, stderr and the exit status must be equal,
byte for byte: argv, ``sys.path[0]``, ``__main__``'s attributes, tracebacks,
``SystemExit``, ``KeyboardInterrupt``, atexit and threads at exit.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.kernel

RunSealkit = Callable[..., subprocess.CompletedProcess[str]]

SHOW = textwrap.dedent(
    """
    import os, sys, atexit, threading
    print(sys.argv, repr(sys.path[0]), __name__, __package__)
    print(sorted(k for k in globals() if k.startswith("__")), type(__loader__).__name__,
          repr(globals().get("__file__")), repr(globals().get("__cached__")), __spec__)
    print(sys.modules["__main__"] is sys.modules[__name__], "sealkit.sealing.hardening" in sys.modules)
    atexit.register(print, "atexit ran")
    threading.Thread(target=lambda: (__import__("time").sleep(0.05), print("thread done"))).start()
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "raise":
        def inner():
            raise ValueError("boom")
        try:
            inner()
        except ValueError as exc:
            raise KeyError("chained") from exc
    if what == "exit3":
        sys.exit(3)
    if what == "exitmsg":
        sys.exit("bad things")
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "sealkit-error":
        from sealkit.errors import StateError
        raise StateError("the program's own error")
    print("end", what)
    """
)


def both(
    args: list[str],
    cwd: Path,
    stdin: str | bytes | Path | None = None,
    python: str = sys.executable,
) -> tuple[subprocess.CompletedProcess[str], ...]:
    """``python ARGS`` and ``python -m sealkit run ARGS``, same cwd and environment.

    ``stdin`` as bytes reaches the program byte for byte (surrogateescape)
    through a pipe; as a Path, the file itself is stdin (seekable).
    """
    env = python_env()
    if isinstance(stdin, bytes):
        stdin = stdin.decode("utf-8", "surrogateescape")
    results = []
    for prefix in ([], ["-m", "sealkit", "run"]):
        with contextlib.ExitStack() as stack:
            feed = (
                {"stdin": stack.enter_context(stdin.open("rb"))}
                if isinstance(stdin, Path)
                else {"input": stdin}
            )
            results.append(
                subprocess.run(
                    [python, *prefix, *args],
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    encoding="utf-8",
                    errors="surrogateescape",
                    timeout=120,
                    check=False,
                    **feed,  # type: ignore[arg-type]
                )
            )
    return tuple(results)


def same(
    args: list[str],
    cwd: Path,
    stdin: str | bytes | Path | None = None,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    plain, sealed = both(args, cwd, stdin, python)
    # Allowed to differ: whether sealkit is loaded, and object addresses in reprs.
    plain_out = plain.stdout.replace("True False\n", "True True\n")
    assert (sealed.returncode, _mask(sealed.stdout), sealed.stderr) == (
        plain.returncode,
        _mask(plain_out),
        plain.stderr,
    ), f"python: {plain!r}\nsealkit run: {sealed!r}"
    return sealed


def _mask(text: str) -> str:
    return re.sub(r" at 0x[0-9a-f]+>", " at 0x...>", text)


@pytest.fixture
def prog(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "show.py").write_text(SHOW)
    (tmp_path / "link.py").symlink_to(tmp_path / "sub" / "show.py")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "__main__.py").write_text(SHOW)
    (tmp_path / "pkg" / "mod.py").write_text(SHOW)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(SHOW)
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["sub/show.py"],
        ["sub/show.py", "a", "--level", "all", "-m", "x"],
        ["link.py", "plain"],
        ["sub/show.py", "raise"],
        ["sub/show.py", "exit3"],
        ["sub/show.py", "exitmsg"],
        ["sub/show.py", "sealkit-error"],
        ["-m", "pkg.mod", "x", "-c", "y"],
        ["-m", "pkg", "raise"],
        ["-m", "no_such_module_here"],
        ["app", "exit3"],
        ["missing.py"],
    ],
    ids=" ".join,
)
def test_runs_like_python(prog: Path, args: list[str]) -> None:
    result = same(args, prog)
    assert result.returncode in (0, 1, 2, 3)


def test_code_and_stdin_like_python(prog: Path) -> None:
    same(["-c", SHOW, "raise"], prog)
    same(["-c", SHOW, "x", "--imports"], prog)
    same(["-", "exit3"], prog, stdin=SHOW)


def test_keyboard_interrupt_dies_by_sigint_like_python(prog: Path) -> None:
    result = same(["sub/show.py", "interrupt"], prog)
    assert result.returncode == -2  # killed by SIGINT, after atexit and threads
    assert result.stderr.rstrip().endswith("KeyboardInterrupt")
    assert "atexit ran" in result.stdout and "thread done" in result.stdout


def test_program_runs_hardened(sealkit_cli: RunSealkit, tmp_path: Path) -> None:
    check = textwrap.dedent(
        """
        import json, sys
        from sealkit._os import procfs
        import _decimal  # imported after hardening (unlike _bz2: argparse loads it)
        def sealed(part, perms):
            vmas = [v for v in procfs.read_smaps() if part in v.path and v.perms == perms]
            return bool(vmas) and all(v.sealed for v in vmas)
        print(json.dumps({"argv": sys.argv, "libc text": sealed("libc.so", "r-xp"),
                          "libc data": sealed("libc.so", "rw-p"),
                          "_decimal text": sealed("_decimal.cpython", "r-xp"),
                          "vdso": sealed("[vdso]", "r-xp")}))
        """
    )
    plain = sealkit_cli("run", "-c", check, "x", cwd=str(tmp_path))
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout) == {
        "argv": ["-c", "x"], "libc text": True, "libc data": False, "_decimal text": False,
        "vdso": False,
    }  # fmt: skip
    full = sealkit_cli(
        "run", "--level", "all", "--imports", "--system", "--report", "-c", check, cwd=str(tmp_path)
    )
    assert full.returncode == 0, full.stderr
    assert json.loads(full.stdout) == {
        "argv": ["-c"], "libc text": True, "libc data": True, "_decimal text": True, "vdso": True,
    }  # fmt: skip
    first = full.stderr.splitlines()[0]
    assert first.startswith("harden(): level=all: sealed ") and "later imports sealed" in first
    assert "[vdso]" in full.stderr and "libc.so" in full.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus", "x.py"], "unrecognized arguments: --bogus"),
        (["--level", "most", "-c", "pass"], "argument --level: invalid choice"),
        ([], "give a script, -m MODULE or -c CODE"),
        (["-m"], "argument -m: expected a module name"),
        (["-c"], "argument -c: expected the code to run"),
    ],
)
def test_bad_usage_is_one_line_exit_2(
    sealkit_cli: RunSealkit, tmp_path: Path, args: list[str], message: str
) -> None:
    result = sealkit_cli("run", *args, cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_run_loads_no_heavy_dependency(sealkit_cli: RunSealkit, tmp_path: Path) -> None:
    # What the program finds already imported when it starts.
    code = (
        "import sys; print(sorted(m for m in ('rich', 'psutil', 'elftools') if m in sys.modules))"
    )
    result = sealkit_cli("run", "-c", code, cwd=str(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


# --- found by review: each compared with plain python -------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-cimport sys; print(sys.argv)", "--level", "all", "-h", "--report", "x"],
        ["-c", "import sys; print(sys.argv)", "-h", "--imports"],
        ["-mpkg.mod", "-c", "1", "--level", "all"],
        ["-mpkg.mod", "-m", "json.tool", "-h"],
        ["--", "sub/show.py", "--report"],
    ],
    ids=" ".join,
)
def test_program_words_after_attached_selector_are_the_programs(
    prog: Path, args: list[str]
) -> None:
    # argparse took "-cCODE"/"-mMOD" as finished options and then parsed the
    # program's words as sealkit's: they vanished, -h printed sealkit's help.
    same(args, prog)


def test_sealkit_options_only_before_the_program(sealkit_cli: RunSealkit, tmp_path: Path) -> None:
    shown = sealkit_cli(
        "run", "--report", "--lev", "all", "-cprint('ran')", "-h", cwd=str(tmp_path)
    )
    assert (shown.returncode, shown.stdout) == (0, "ran\n"), shown.stderr
    assert shown.stderr.startswith("harden(): level=all: sealed "), shown.stderr
    helped = sealkit_cli("run", "-h", cwd=str(tmp_path))
    assert helped.returncode == 0 and helped.stdout.startswith("usage: sealkit run")
    bad = sealkit_cli("run", "--level", "-cpass", cwd=str(tmp_path))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr


FINALISED = textwrap.dedent(
    """
    import atexit, signal, sys
    out = open("out.txt", "w")
    out.write("buffered, flushed only by finalisation\\n")
    class Noisy:
        def __del__(self):
            print("__del__ ran", flush=True)
    noisy = Noisy()
    atexit.register(print, "atexit ran", flush=True)
    if sys.argv[1:] == ["ignored"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt
    """
)


@pytest.mark.parametrize("mode", ["default", "ignored"])
def test_keyboard_interrupt_finalises_then_dies_by_sigint(tmp_path: Path, mode: str) -> None:
    # sealkit killed itself from an atexit handler: no finalisation, so
    # buffered files lost their data and __del__ never ran.
    (tmp_path / "fin.py").write_text(FINALISED)
    plain, sealed = both(["fin.py", mode], tmp_path)
    assert plain.returncode == -2 and "__del__ ran" in plain.stdout
    assert (sealed.returncode, sealed.stdout, sealed.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert (tmp_path / "out.txt").read_text() == "buffered, flushed only by finalisation\n"


@pytest.mark.parametrize(
    ("cwd", "args"),
    [
        (".", ["./sub/show.py", "raise"]),
        (".", ["sub/../link.py", "raise"]),
        ("sub", ["../sub/./show.py", "raise"]),
        (".", ["app/", "raise"]),
        (".", ["./app", "exit3"]),
        ("app", ["."]),
        ("app", [""]),
        (".", ["./missing.py"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_relative_script_paths_unnormalised_like_python(
    prog: Path, cwd: str, args: list[str]
) -> None:
    # CPython joins cwd and the path without normalising (_Py_abspath):
    # sealkit's os.path.abspath dropped "./" and "..", and a trailing "/".
    same(args, prog / cwd)


@pytest.mark.parametrize(
    "source",
    [
        b'# -*- coding: latin-1 -*-\nprint("caf\xe9")\n',
        b'#!/usr/bin/env python\n# coding: latin-1\nprint("caf\xe9")\n',
        b'\xef\xbb\xbfprint("bom", __file__)\n',
        b"\xef\xbb\xbf# coding: latin-1\nprint(1)\n",
        b'print("caf\xc3\xa9")\n',
        b"x = 1\r\ny = 2\r\nprint('caf\xe9')\n",
        b'print("\xed\xa0\x80")\n',
        b'\xef\xbb\xbfprint("caf\xe9")\n',
        b"# -*- coding: nosuch -*-\n",
        b"# coding: Latin_1-x\nprint(1)\n",
        b"\n# coding: utf_8\nprint(1)\n",
        b"x = 1\n\xe2\x82\n",
    ],
)
@pytest.mark.parametrize("via", ["pipe", "file"])
def test_stdin_program_read_as_bytes_like_python(prog: Path, source: bytes, via: str) -> None:
    # sealkit decoded stdin as text: cookies ignored, and a non-UTF-8 program
    # failed with a UnicodeDecodeError instead of python's SyntaxError.
    (prog / "in.py").write_bytes(source)
    same(["-", "a"], prog, stdin=source if via == "pipe" else prog / "in.py")


@pytest.fixture
def pycs(tmp_path: Path) -> Path:
    import importlib.util
    import marshal
    import py_compile

    (tmp_path / "hello.py").write_text("import sys\nprint('hello', __file__, sys.argv)\n")
    py_compile.compile(str(tmp_path / "hello.py"), str(tmp_path / "good.pyc"), doraise=True)
    good = (tmp_path / "good.pyc").read_bytes()
    magic = importlib.util.MAGIC_NUMBER
    (tmp_path / "noext").write_bytes(good)
    (tmp_path / "badmagic.pyc").write_bytes(b"\x00\x00\r\n" + good[4:])
    (tmp_path / "halfmagic").write_bytes(magic[:2] + b"xx" + good[4:])
    (tmp_path / "short.pyc").write_bytes(b"ab")
    (tmp_path / "header.pyc").write_bytes(magic + b"\0" * 3)
    (tmp_path / "notcode.pyc").write_bytes(good[:16] + marshal.dumps(5))
    (tmp_path / "garbage.pyc").write_bytes(good[:16] + b"\xff\xff")
    return tmp_path


@pytest.mark.parametrize(
    "name",
    ["good.pyc", "noext", "badmagic.pyc", "halfmagic", "short.pyc", "header.pyc",
     "notcode.pyc", "garbage.pyc"],
)  # fmt: skip
def test_pyc_detected_and_checked_like_python(pycs: Path, name: str) -> None:
    # sealkit went by the name only and never checked the magic number.
    same([name, "x"], pycs)


@pytest.mark.parametrize(
    "code",
    [
        "def hook(*a):\n    raise ValueError('hook broke')\nsys.excepthook = hook\n1/0",
        "del sys.excepthook\n1/0",
        "sys.excepthook = None\nraise KeyboardInterrupt",
        "sys.excepthook = lambda *a: sys.exit(7)\nraise KeyboardInterrupt",
        "sys.excepthook = lambda *a: print(sys.exc_info(), flush=True)\n1/0",
    ],
)
def test_failing_excepthook_like_python(prog: Path, code: str) -> None:
    # sealkit reported its own internal error (exit 3) when the hook failed.
    same(["-c", "import sys\n" + code], prog)


def test_cant_open_names_the_interpreter_as_invoked(prog: Path) -> None:
    (prog / "py").symlink_to(sys.executable)
    result = same(["missing.py"], prog, python="./py")
    assert result.stderr.startswith("./py: can't open file "), result.stderr
