"""Test support for live sealing (``sealkit seal --pid``): the C targets in
``tests/targets/``, built with gcc on first use, and child processes that are
always reaped, so that a failing test never leaves a stopped target behind.
The fixtures ``c_targets`` and ``spawn`` (tests/conftest.py) hand them out.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TARGETS = Path(__file__).resolve().parent / "targets"


class CTargets:
    """``targets["sleeper"]`` is the path of ``tests/targets/sleeper.c``
    built (once per session); ``lib*.c`` become shared objects, ``*.S``
    32-bit static programs."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.built: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.built:
            self.built[name] = self._build(name)
        return self.built[name]

    def _build(self, name: str) -> str:
        if shutil.which("gcc") is None:
            pytest.skip("gcc is needed to build the live-sealing test targets")
        asm = TARGETS / f"{name}.S"
        if asm.exists():  # 32-bit, without libc: needs only a 32-bit-capable binutils
            exe, obj = self.out / name, self.out / f"{name}.o"
            for cmd in (
                ["as", "--32", "-o", str(obj), str(asm)],
                ["ld", "-m", "elf_i386", "-o", str(exe), str(obj)],
            ):
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    pytest.skip(f"cannot build a 32-bit program here: {done.stderr.strip()}")
            return str(exe)
        src = TARGETS / f"{name}.c"
        if name.startswith("lib"):
            out = self.out / f"{name}.so"
            cmd = ["gcc", "-O1", "-shared", "-fPIC", "-Wl,-z,notext", "-o", str(out), str(src)]
        else:
            out = self.out / name
            cmd = ["gcc", "-O1", "-pthread", "-o", str(out), str(src), "-ldl"]
        subprocess.run(cmd, check=True, capture_output=True)
        return str(out)


class Target:
    """A child process that printed ``ready``; :meth:`finish` collects its output."""

    def __init__(
        self, argv: list[str], stdin: bool = False, env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.pid = self.proc.pid
        line = self.readline(10.0)
        assert line.strip() == b"ready", f"target did not start: {line!r}"

    def readline(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "target printed nothing in time"
        return self.proc.stdout.readline()

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def status(self, key: str) -> str:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return line.split(":", 1)[1].strip()
        return ""

    def state(self) -> str:
        return self.status("State")[:1]

    def tracer(self) -> int:
        return int(self.status("TracerPid") or -1)

    def let_go(self) -> bool:
        """Neither stopped nor traced."""
        return self.state() not in ("t", "T") and self.tracer() == 0

    def finish(self, timeout: float = 30.0, input: bytes | None = None) -> tuple[int, str, str]:
        out, err = self.proc.communicate(input=input, timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


Spawn = Callable[..., Target]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def thread_states(pid: int) -> dict[int, str]:
    """The one-letter state of each thread of ``pid``."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_bytes()
        except OSError:
            continue
        out[int(tid)] = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3].decode()
    return out
