"""Writing ``-o FILE`` safely, and exit code 4 when an output cannot be written.

The temporary file is created in the target's directory with an
unpredictable name (O_EXCL | O_NOFOLLOW: nothing planted is followed), never
ends like the target (a collector globbing ``*.prom`` never reads half a
file), is synced before the rename, and gets a mode that does not depend on
the umask. A FIFO nobody reads fails at once instead of blocking.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sealkit.cli import output
from sealkit.cli.main import EXIT_IO, OutputError
from sealkit.cli.output import NEW_FILE_MODE, write_output
from tests.conftest import python_env


def _sealkit(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    options: dict[str, Any] = {"capture_output": True, **kwargs}
    return subprocess.run(
        [sys.executable, "-m", "sealkit", *args], text=True, env=python_env(),
        timeout=timeout, check=False, **options,
    )  # fmt: skip


def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    # The temporary name used to be ".NAME.PID.tmp", opened with O_CREAT and
    # no O_EXCL: anyone who can write the directory (a shared textfile
    # directory) plants that name as a link, and root writes through it.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    shared = tmp_path / "textfile"
    shared.mkdir()
    target = shared / "sealkit.prom"
    planted = shared / f".sealkit.prom.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    write_output("sealkit_metric 1\n", str(target))
    assert victim.read_text() == "precious\n"
    assert target.read_text() == "sealkit_metric 1\n" and not target.is_symlink()
    assert planted.is_symlink()  # left alone, not replaced or removed


def test_the_temporary_file_is_unpredictable_hidden_never_like_the_target_and_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, Any]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        events.append(("replace", os.fsdecode(src)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(output.os, "fsync", fsync)
    monkeypatch.setattr(output.os, "replace", replace)
    names = []
    for target in ("sealkit.prom", "report.tmp", "sealkit.prom"):
        events.clear()
        write_output("x 1\n", str(tmp_path / target))
        kinds = [kind for kind, _ in events]
        assert kinds[:2] == ["fsync", "replace"], events  # data synced before the rename
        tmp = events[1][1]
        assert events[0][1] == str(tmp_path / tmp)  # the file synced is the one renamed
        assert tmp.startswith(".") and "/" not in tmp
        assert not tmp.endswith(Path(target).suffix), (tmp, target)
        names.append(tmp)
    assert names[0] != names[2]  # not derived from the pid or the name alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.tmp", "sealkit.prom"]


def test_file_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        new = tmp_path / "new.prom"
        write_output("a 1\n", str(new))
        kept = tmp_path / "kept.prom"
        kept.write_text("old\n")
        kept.chmod(0o640)
        write_output("b 1\n", str(kept))
    finally:
        os.umask(old)
    # node_exporter reads the textfile as another user: 0644, not umask's 0600
    assert stat.S_IMODE(new.stat().st_mode) == NEW_FILE_MODE == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640  # an existing file keeps its mode
    assert kept.read_text() == "b 1\n"


def test_a_fifo_nobody_reads_fails_at_once_and_one_that_is_read_gets_it(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    done = _sealkit("maps", "self", "--svg", str(fifo), timeout=30)
    assert time.monotonic() - started < 20  # it used to wait for a reader for ever
    assert done.returncode == EXIT_IO, done.stderr
    assert done.stderr.count("\n") == 1 and "nobody has the FIFO" in done.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)

    got: list[bytes] = []
    tid: list[int] = []

    def read() -> None:
        tid.append(threading.get_native_id())
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the reader sleeps in open(2)
        if tid and "wait_for_partner" in Path(f"/proc/self/task/{tid[0]}/wchan").read_text():
            break
        time.sleep(0.01)
    done = _sealkit("maps", "self", "--svg", str(fifo), timeout=30)
    reader.join(10)
    assert done.returncode == 0, done.stderr
    assert got and b"<svg" in got[0][:500] and got[0].rstrip().endswith(b"</svg>")


@pytest.mark.parametrize(
    "args",
    [
        ["maps", "self", "--svg", "/nonexistent-dir/space.svg"],
        ["audit", "--pid", "1", "-o", "/nonexistent-dir/sealkit.prom"],
    ],
    ids=["svg", "audit -o"],
)
def test_an_output_that_cannot_be_written_exits_4_in_one_line(args: list[str]) -> None:
    done = _sealkit(*args)
    assert done.returncode == EXIT_IO == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot write /nonexistent-dir/" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args", [["maps", "self", "--svg"], ["audit", "--pid", "1", "-o"]], ids=["svg", "audit -o"]
)
def test_an_output_that_is_a_directory_exits_4_in_one_line(args: list[str], tmp_path: Path) -> None:
    # docs/cli.md: "A directory, a missing directory, ...: one line, exit code
    # 4"; `audit -o DIR` used to exit 2 (bad usage) with its own wording.
    done = _sealkit(*args, str(tmp_path))
    assert done.returncode == EXIT_IO == 4, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot write {tmp_path}: it is a directory" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_output_dash_is_stdout_or_refused(tmp_path: Path) -> None:
    # `-o -` wrote a file named "-" in the current directory.
    done = _sealkit("audit", "--pid", str(os.getpid()), "--format", "prometheus", "-o", "-",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sealkit_audit_processes" in done.stdout
    assert list(tmp_path.iterdir()) == []
    # maps prints its table on stdout: an SVG there would be mixed into it
    done = _sealkit("maps", "self", "--svg", "-", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--svg -" in done.stderr and done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_on_stdout_exits_4_in_one_line() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        done = _sealkit(
            "check", "--json", capture_output=False, stdout=full, stderr=subprocess.PIPE
        )
    assert done.returncode == EXIT_IO, done.stderr
    assert done.stderr.count("\n") == 1 and "No space left" in done.stderr, done.stderr


def test_write_output_errors_are_output_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        write_output("x", str(tmp_path))
    with pytest.raises(OutputError, match="cannot write"):
        write_output("x", str(tmp_path / "missing" / "x.prom"))
    assert list(tmp_path.iterdir()) == []


def _shared_dir(tmp_path: Path) -> Path:
    """A directory like /tmp or a shared textfile directory: sticky and
    world-writable, owned by this user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


def _planted(link: Path, to: Path) -> None:
    """A symbolic link made by another user (nobody)."""
    if os.geteuid() != 0:
        pytest.skip("making a link owned by another user needs root")
    link.symlink_to(to)
    os.lchown(link, 65534, 65534)


def test_another_users_link_in_a_shared_directory_is_not_followed(tmp_path: Path) -> None:
    # Root writing -o /tmp/x/sealkit.prom followed a link another user had
    # planted at that name and replaced whatever it pointed to (where
    # fs.protected_symlinks is 0, as in many containers, nothing stops it).
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    shared = _shared_dir(tmp_path)
    _planted(shared / "sealkit.prom", victim)
    with pytest.raises(OutputError, match=r"symbolic link .* another user"):
        write_output("sealkit_metric 1\n", str(shared / "sealkit.prom"))
    assert victim.read_text() == "precious\n"
    assert (shared / "sealkit.prom").is_symlink() and os.listdir(shared) == ["sealkit.prom"]
    # ... also as a directory on the way
    (tmp_path / "etc").mkdir()
    _planted(shared / "dir", tmp_path / "etc")
    with pytest.raises(OutputError, match=r"symbolic link .* another user"):
        write_output("x\n", str(shared / "dir" / "sealkit.prom"))
    assert os.listdir(tmp_path / "etc") == []
    done = _sealkit("audit", "--pid", str(os.getpid()), "-o", str(shared / "sealkit.prom"))
    assert done.returncode == EXIT_IO and "another user" in done.stderr, done.stderr


def test_links_the_kernel_would_follow_are_followed(tmp_path: Path) -> None:
    # fs.protected_symlinks' rule: a link in a sticky world-writable
    # directory is followed when it is the follower's or the directory owner's.
    shared = _shared_dir(tmp_path)
    real = tmp_path / "real.prom"
    real.write_text("old\n")
    (shared / "mine.prom").symlink_to(real)
    write_output("new\n", str(shared / "mine.prom"))
    assert real.read_text() == "new\n" and (shared / "mine.prom").is_symlink()
    private = tmp_path / "private"
    private.mkdir()
    (private / "link.prom").symlink_to("../real.prom")  # relative, in a plain directory
    if os.geteuid() == 0:
        os.lchown(private / "link.prom", 65534, 65534)
    write_output("newer\n", str(private / "link.prom"))
    assert real.read_text() == "newer\n"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OutputError, match="cannot write"):
        write_output("x\n", str(tmp_path / "loop"))


def test_dev_stdout_is_written_in_place_whatever_it_is(tmp_path: Path) -> None:
    # /dev/stdout -> /proc/self/fd/1 -> "pipe:[...]": the kernel's own links.
    into_pipe = _sealkit("audit", "--pid", str(os.getpid()), "-o", "/dev/stdout")
    assert into_pipe.returncode == 0 and "PID" in into_pipe.stdout, into_pipe.stderr
    with open(tmp_path / "out.txt", "w") as fh:
        into_file = _sealkit(
            "audit", "--pid", str(os.getpid()), "-o", "/dev/stdout",
            capture_output=False, stdout=fh, stderr=subprocess.PIPE,
        )  # fmt: skip
    assert into_file.returncode == 0, into_file.stderr
    assert "PID" in (tmp_path / "out.txt").read_text()
