"""``sealkit run``: the program behaves exactly as under ``python``, hardened.

Differential: each program runs as ``python ARGS`` and as ``python -m
sealkit run ARGS``, and stdout, stderr and the exit status must be equal,
byte for byte: argv, ``sys.path[0]``, ``__main__``'s attributes, tracebacks,
``SystemExit``, ``KeyboardInterrupt``, atexit and threads at exit.
"""

from __future__ import annotations

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
    print(sys.modules["__main__"] is sys.modules[__name__], "sealkit.hardening" in sys.modules)
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
    args: list[str], cwd: Path, stdin: str | None = None
) -> tuple[subprocess.CompletedProcess[str], ...]:
    """``python ARGS`` and ``python -m sealkit run ARGS``, same cwd and environment."""
    env = python_env()
    return tuple(
        subprocess.run(
            [sys.executable, *prefix, *args],
            cwd=cwd,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for prefix in ([], ["-m", "sealkit", "run"])
    )


def same(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    plain, sealed = both(args, cwd, stdin)
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
        from sealkit import procfs
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
