"""``-o FILE`` in the textfile directory: what the fleet deployment relies on.

The unit writes sealkit.prom into a directory that node_exporter reads and
that others may be able to write. The prototype found that a symbolic link
planted at the temporary file's name (``.sealkit.prom.PID.tmp``, with a
guessable pid) made ``-o`` overwrite the link's target, as root, and left
sealkit.prom a link to it. Whatever the temporary file is called, a link
planted there must not be followed. This depends on how the command line
writes ``-o`` files (cli/output.py), not on the audit.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.slow


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = textfile_dir / "sealkit.prom"
    # the shell's pid is the one sealkit runs with after exec
    script = (
        f"ln -s {shlex.quote(str(victim))} {shlex.quote(str(textfile_dir))}/.sealkit.prom.$$.tmp"
        f" && exec {shlex.quote(sys.executable)} -m sealkit audit --format prometheus"
        f" --pid $$ -o {shlex.quote(str(target))}"
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=python_env(), timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert target.is_file() and not target.is_symlink()
    assert "sealkit_audit_processes" in target.read_text()
