"""``sealkit audit`` and ``sealkit maps`` end with ``os._exit`` once their
output is flushed (cli/main.py, ``EXIT_WITHOUT_TEARDOWN``): what they print,
and their exit codes, are what the same command run in process (through
``main(argv)``, which returns and tears down as before) prints and returns,
on success, on each error, with a reader that goes away, and with stdout on
a full device.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sealkit.cli import main as cli_main
from tests.conftest import run_sealkit

NO_SUCH_PID = str((1 << 22) + 1)  # above pid_max: never a process


@contextlib.contextmanager
def _waiting() -> Iterator[int]:
    """A process whose mappings stay as they are while it waits."""
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        yield child.pid
    finally:
        child.communicate(timeout=60)


def _in_process(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli_main.main(args)
    assert not cli_main._held  # main(argv) never holds: it returns as before
    return status, out.getvalue(), err.getvalue()


def _untimed(text: str) -> str:
    """Output with its times (seconds since the epoch, durations) blanked."""
    return re.sub(r"\d+\.\d+(e-?\d+)?", "T", text)


def test_the_commands_exit_early() -> None:
    from sealkit.cli.commands import audit, maps

    assert audit.EXIT_WITHOUT_TEARDOWN and maps.EXIT_WITHOUT_TEARDOWN


@pytest.mark.parametrize(
    "args",
    [
        ["maps", "PID", "--json"],
        ["maps", "PID", "--json", "--sealed-only"],
        ["maps", "PID"],
        ["maps", NO_SUCH_PID],
        ["maps", "not-a-pid"],
        ["audit", "--pid", "PID", "--format", "prometheus", "--host", "h"],
        ["audit", "--pid", NO_SUCH_PID, "--json"],
        ["audit", "--pid", "PID", "--require", "sealed:*"],
        ["audit", "--bogus"],
    ],
)
def test_output_and_exit_code_as_in_process(args: list[str]) -> None:
    with _waiting() as pid:
        args = [str(pid) if a == "PID" else a for a in args]
        command = run_sealkit(*args, "--width", "100")
        status, out, err = _in_process([*args, "--width", "100"])
    assert (command.returncode, _untimed(command.stdout), command.stderr) == (
        status, _untimed(out), err
    )  # fmt: skip


def test_audit_json_as_in_process() -> None:
    """The sweep's JSON differs in its times only."""
    with _waiting() as pid:
        command = run_sealkit("audit", "--pid", str(pid), "--json")
        status, out, err = _in_process(["audit", "--pid", str(pid), "--json"])
    assert (command.returncode, command.stderr) == (status, err) == (0, "")
    first, second = json.loads(command.stdout), json.loads(out)
    for doc in (first, second):
        for key in ("started", "duration_seconds", "timestamp"):
            doc.pop(key, None)
    assert first == second


def test_a_reader_that_goes_away_and_a_full_disk() -> None:
    pipe = subprocess.run(
        f"{sys.executable} -m sealkit maps self --json | head -c 10", shell=True,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert pipe.stdout == '{"schema":'[:10] and pipe.stderr == ""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "sealkit", "maps", "self", "--json"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 4
    assert done.stderr == "sealkit maps: cannot write the output: No space left on device\n"


@pytest.mark.parametrize(("command", "early"), [("maps", True), ("audit", True), ("elf", False)])
def test_teardown_is_skipped_by_these_commands_only(command: str, early: bool) -> None:
    """An atexit handler runs at a normal exit; after these commands'
    os._exit it does not (their output is complete all the same)."""
    args = {"maps": ["maps", "self", "--json"], "audit": ["audit", "--pid", NO_SUCH_PID, "--json"],
            "elf": ["elf", sys.executable, "--json"]}[command]  # fmt: skip
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('teardown', file=sys.stderr))\n"
        "from sealkit.cli.main import entry\n"
        f"sys.argv = ['sealkit', *{args!r}]\n"
        "entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert json.loads(done.stdout)  # all of it, flushed
    assert ("teardown" in done.stderr) is not early


def test_a_sweep_leaves_no_cycles_for_the_collector() -> None:
    """Why audit and maps may run with the cyclic collector off: a sweep of
    this host (and its JSON, and maps of a process) leaves no garbage that
    only the collector would free."""
    import gc

    from sealkit.host.maps import maps_json, process_maps
    from sealkit.host.outputs import audit_json_text
    from sealkit.host.sweep import scan_host

    gc.collect()
    gc.disable()
    try:
        audit_json_text(scan_host(pids=[1, 2, int(NO_SUCH_PID)]))
        audit_json_text(scan_host())
        maps_json(process_maps("self"))
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_the_collector_is_on_again_after_main() -> None:
    import gc

    assert gc.isenabled()
    _in_process(["maps", "self", "--json"])
    assert gc.isenabled()
