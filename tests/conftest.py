"""Shared test machinery.

* Hypothesis runs the derandomized "ci" profile unless
  ``SEALKIT_HYPOTHESIS=dev`` asks for fresh exploration.
* ``kernel`` tests are skipped, with the reason, only when the running kernel
  lacks mseal(2) (probed with ``mseal(0, 0, 0)``, which has no side effect).
* ``in_child(fn, *args)`` runs ``fn`` in a forked child and returns its
  result (or re-raises its exception): seals made there vanish when the child
  exits, so they never pile up in the test runner.
* ``run_python(code, *args)`` runs code in a fresh interpreter with sealkit
  importable, for tests that need a whole process (CLI, harden, audit).
* ``c_targets[name]`` builds ``tests/targets/NAME.c`` once per session (gcc;
  skipped, saying so, without it); ``spawn(argv)`` starts a target process
  and reaps it after the test (``tests/live_support.py``).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.live_support import CTargets, Target

# Hypothesis profiles. "ci" (the default, so the README's test command and CI
# use it) is derandomized: the same examples every run, so the gate is
# reproducible and a rare find cannot turn CI red at random (exploration is
# what `sealkit fuzz` campaigns and the "dev" profile are for); no deadline,
# because these machines are shared and timing-noisy. "dev" explores afresh
# each run and keeps failing examples in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("SEALKIT_HYPOTHESIS", "ci"))

SRC = str(Path(__file__).resolve().parent.parent / "src")

# Tests that signal a sealkit process they started (SIGINT, SIGHUP) need it to
# have the default dispositions a terminal gives. A runner started in the
# background (`nohup`, `cmd &` in a script: POSIX has such a shell ignore
# SIGINT and SIGQUIT) ignores them, and an ignored signal stays ignored across
# exec: every child would then ignore the signal its test sends. Handled
# signals are reset to the default by exec, so restore them here.
for _sig, _handler in (
    (signal.SIGINT, signal.default_int_handler),
    (signal.SIGHUP, signal.SIG_DFL),
    (signal.SIGQUIT, signal.SIG_DFL),
):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, _handler)

# The `sealkit exec` fixtures (exec_lib, fx, sealkit_exec), shared by tests/kernel and tests/slow.
pytest_plugins = ("tests.exec_support",)


def _mseal_status() -> str | None:
    """``None`` when mseal works, else why not."""
    from sealkit._os import syscalls
    from sealkit.errors import KernelError

    try:
        syscalls.mseal(0, 0, 0)
    except KernelError as exc:
        return f"this kernel lacks mseal(2): mseal(0, 0, 0) failed with {exc}"
    return None


MSEAL_MISSING = _mseal_status()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MSEAL_MISSING is None:
        return
    skip = pytest.mark.skip(reason=MSEAL_MISSING)
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


class ChildDied(AssertionError):
    """The forked child was killed by a signal or exited without a result."""


def run_in_child(fn: Callable[..., Any], *args: Any, timeout: float = 60.0) -> Any:
    """Run ``fn(*args)`` in a forked child; return its result or raise its exception."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            payload = pickle.dumps(("ok", fn(*args)))
        except BaseException as exc:
            try:
                payload = pickle.dumps(("err", exc))
            except Exception:
                payload = pickle.dumps(("err", AssertionError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_fd)
    signal.alarm(int(timeout))
    try:
        with os.fdopen(read_fd, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
    finally:
        signal.alarm(0)
    if os.WIFSIGNALED(status):
        raise ChildDied(f"child killed by signal {os.WTERMSIG(status)}")
    if not data:
        raise ChildDied(
            f"child exited with status {os.waitstatus_to_exitcode(status)} and no result"
        )
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value


@pytest.fixture
def in_child() -> Callable[..., Any]:
    return run_in_child


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[bytes], str]:
    """A factory of regular files in ``tmp_path`` holding the given bytes."""

    def make(data: bytes) -> str:
        path = tmp_path / f"f{len(list(tmp_path.iterdir()))}.bin"
        path.write_bytes(data)
        return str(path)

    return make


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("SEALKIT_DEBUG", None)
    if extra:
        env.update(extra)
    return env


def run_python(
    code: str, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``python -c code args...`` in a fresh interpreter; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=timeout, env=python_env(env), cwd=cwd, check=False,
    )  # fmt: skip


def run_sealkit(*args: str, timeout: float = 300.0, env: dict[str, str] | None = None,
                cwd: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``python -m sealkit args...``; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "sealkit", *args],
        capture_output=True, text=True, timeout=timeout, env=python_env(env), cwd=cwd, check=False,
    )  # fmt: skip


@pytest.fixture
def sealkit_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_sealkit


@pytest.fixture
def python() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_python


@pytest.fixture(scope="session")
def c_targets(tmp_path_factory: pytest.TempPathFactory) -> CTargets:
    return CTargets(tmp_path_factory.mktemp("targets"))


@pytest.fixture
def spawn() -> Iterator[Callable[..., Target]]:
    started: list[Target] = []

    def start(argv: list[str], stdin: bool = False, env: dict[str, str] | None = None) -> Target:
        target = Target(argv, stdin, env)
        started.append(target)
        return target

    yield start
    for target in started:
        target.kill()
