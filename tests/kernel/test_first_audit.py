"""The first audit of a stock host: every row says "not sealed", so on a
terminal the audit says why and how to see sealing, and that advice works as
written (``sealkit run app.py``, then ``sealkit audit --comm app.py``)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sealkit.cli.commands.audit import NOTHING_SEALED

from ..conftest import python_env

pytestmark = pytest.mark.kernel


def _on_a_terminal(*args: str) -> str:
    """``sealkit ARGS`` with stdout and stderr on a pseudo-terminal; what it printed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", *args], stdin=child, stdout=child, stderr=child,
        env=python_env(), close_fds=True,
    )  # fmt: skip
    os.close(child)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 120)
        if not ready:
            proc.kill()
            pytest.fail(f"sealkit {' '.join(args)} on a terminal did not finish")
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(30) == 0, out
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode("utf-8", "replace"))
    return " ".join(text.replace("\r", "").split())  # folded on the terminal's width


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_an_unsealed_host_is_explained_on_a_terminal_only(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        shown = _on_a_terminal("audit", "--pid", str(sleeper.pid), "--width", "100")
        assert "not sealed" in shown and _one_line(NOTHING_SEALED) in shown
        piped = subprocess.run(
            [sys.executable, "-m", "sealkit", "audit", "--pid", str(sleeper.pid)],
            capture_output=True, text=True, env=python_env(), timeout=120, check=True,
        )  # fmt: skip
        assert "not sealed" in piped.stdout
        assert "To see sealing" not in piped.stdout + piped.stderr  # scripts get the table only
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_advice_works_as_written(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import sys, time\nprint('up', flush=True)\ntime.sleep(60)\n")
    served = subprocess.Popen(
        [sys.executable, "-m", "sealkit", "run", str(app)], stdout=subprocess.PIPE, text=True,
        env=python_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        assert served.stdout is not None and served.stdout.readline() == "up\n"
        time.sleep(0.1)
        shown = _on_a_terminal("audit", "--comm", "app.py", "--width", "200")
        assert f" {served.pid} " in f" {shown} ", shown
        assert "text" in shown and "1 with sealed memory" in shown, shown
        assert "To see sealing" not in shown
    finally:
        served.kill()
        served.communicate()
