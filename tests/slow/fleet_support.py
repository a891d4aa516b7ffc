"""Machinery for the fleet tests: node_exporter, Prometheus, the unit's command.

* :func:`unit_command` reads ``deploy/systemd/sealkit-audit.service`` and
  returns its ``ExecStart=`` as an argument list, expanded as systemd does
  (``$VAR`` split at whitespace), with the sealkit executable and the
  textfile directory replaced: the command the timer runs, not a copy of it.
* :class:`Service` starts a daemon on 127.0.0.1 and stops it (by its pid).
* :func:`parse_metrics` reads the text exposition format.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import python_env

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "sealkit-audit.service"
TIMER = REPO / "deploy" / "systemd" / "sealkit-audit.timer"

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMETHEUS = shutil.which("prometheus")


def missing_node_exporter() -> str | None:
    if NODE_EXPORTER is None:
        return "node_exporter not found (Debian package 'prometheus-node-exporter')"
    return None


def missing_prometheus() -> str | None:
    if PROMETHEUS is None:
        return "prometheus not found (Debian package 'prometheus')"
    return missing_node_exporter()


# --- the unit ------------------------------------------------------------------


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key=value`` lines of the [Service] section, in order, per key."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def unit_command(
    textfile_dir: str, sealkit: list[str], audit_args: str | None = None
) -> tuple[list[str], str]:
    """The unit's ExecStart as argv, and the textfile it writes.

    ``sealkit`` replaces the unit's executable; ``textfile_dir`` replaces the
    directory named by ``ReadWritePaths=`` (which must be the one the
    ``-o`` file is in); ``audit_args`` is ``$SEALKIT_AUDIT_ARGS`` (default:
    the unit's ``Environment=`` value).
    """
    settings = unit_settings()
    (exec_start,) = settings["ExecStart"]
    (rw_dir,) = settings["ReadWritePaths"]
    # Only the subset of systemd's syntax used here: no quotes, no specifiers,
    # no prefixes (-, @, +, !, :); one ${NAME}-free $NAME.
    assert not re.search(r"""["'%\\]|\$\{""", exec_start), exec_start
    assert not exec_start.startswith(("-", "@", "+", "!", ":")), exec_start
    env = {}
    for value in settings.get("Environment", []):
        name, _, val = value.partition("=")
        env[name] = val
    if audit_args is not None:
        env["SEALKIT_AUDIT_ARGS"] = audit_args
    argv: list[str] = []
    for word in exec_start.split():
        if word.startswith("$"):
            argv.extend(env.get(word[1:], "").split())  # unset expands to nothing
        else:
            argv.append(word)
    assert os.path.basename(argv[0]) == "sealkit", argv
    output = argv[argv.index("-o") + 1]
    assert os.path.dirname(output) == rw_dir, (output, rw_dir)
    argv = [*sealkit, *(a.replace(rw_dir, textfile_dir, 1) for a in argv[1:])]
    return argv, os.path.join(textfile_dir, os.path.basename(output))


def unit_umask() -> int:
    (value,) = unit_settings()["UMask"]
    return int(value, 8)


def unit_success_statuses() -> set[int]:
    out = {0}
    for value in unit_settings().get("SuccessExitStatus", []):
        out.update(int(v) for v in value.split() if v.isdigit())
    return out


def run_unit_command(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the command with the unit's umask, as the timer would."""
    mask = unit_umask()
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=240, check=False,
        umask=mask,
    )  # fmt: skip


# --- daemons --------------------------------------------------------------------


# Straight to 127.0.0.1, whatever http_proxy a CI runner sets (urllib would
# send even a loopback request to the proxy unless no_proxy names it).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def daemon_user() -> str | None:
    """Debian's packages run node_exporter and Prometheus as 'prometheus':
    do the same when we can, so file permissions are tested as deployed."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("prometheus")
    except KeyError:
        return None
    return "prometheus"


class Service:
    """A daemon listening on 127.0.0.1:port, stopped by :meth:`stop`."""

    def __init__(
        self, argv: list[str], port: int, ready_path: str, log: Path, *, as_daemon_user: bool = True
    ) -> None:
        self.port = port
        self.log = log
        user = daemon_user() if as_daemon_user else None
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            user=user, group=user, extra_groups=[] if user else None, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{argv[0]} exited {self.proc.returncode}: {self.output()}")
            try:
                self.get(ready_path)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} not ready after 30 s: {self.output()}")
            time.sleep(0.1)

    def get(self, path: str, timeout: float = 10) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with _DIRECT.open(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_node_exporter(textfile_dir: str, log: Path, collectors: tuple[str, ...] = ()) -> Service:
    assert NODE_EXPORTER is not None
    port = free_port()
    argv = [
        NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults", "--collector.textfile",
        f"--collector.textfile.directory={textfile_dir}",
        *(f"--collector.{c}" for c in collectors),
    ]  # fmt: skip
    return Service(argv, port, "/metrics", log)


# --- the text exposition format ----------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Labels = frozenset[tuple[str, str]]


def parse_metrics(text: str) -> dict[str, dict[Labels, float]]:
    """``{name: {labels: value}}`` of every sample; raises on a malformed line."""
    out: dict[str, dict[Labels, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, body, value = m.groups()
        labels = []
        pos = 0
        body = body or ""
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            assert lm, f"bad labels in {line!r}"
            val = re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], lm.group(2))
            labels.append((lm.group(1), val))
            pos = lm.end()
        key = frozenset(labels)
        assert key not in out.setdefault(name, {}), f"duplicate sample {line!r}"
        out[name][key] = float(value)
    return out


def one(metrics: dict[str, dict[Labels, float]], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    hits = [v for k, v in metrics.get(name, {}).items() if set(labels.items()) <= dict(k).items()]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
    return hits[0]


IDLE = "sk-fleet-idle"
SEALED = "sk-fleet-seal"

PROBE = r"""
import sys
open("/proc/self/comm", "w").write(sys.argv[1])
if sys.argv[2] != "0":
    import sealkit
    pages = sealkit.Pages(int(sys.argv[2]) * sealkit.flags.PAGE_SIZE)
    pages.write(b"fleet")
    pages.protect("r")
    pages.seal()
print("ready", flush=True)
sys.stdin.read()
"""


class Probe:
    """A python process named ``comm``, blocked reading stdin; ``pages`` sealed."""

    def __init__(self, comm: str, pages: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, comm, str(pages)], env=python_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "ready\n", (
            f"probe failed: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}"
        )

    def any_sealed(self) -> bool:
        """A second reading of what sealkit reports: any ``sl`` in VmFlags."""
        with open(f"/proc/{self.proc.pid}/smaps", "rb") as fh:
            return any(line.startswith(b"VmFlags:") and b"sl" in line.split() for line in fh)

    def maps_lines(self) -> int:
        with open(f"/proc/{self.proc.pid}/maps", "rb") as fh:
            return sum(1 for _ in fh)

    def stop(self) -> None:
        self.proc.communicate(timeout=30)  # closes stdin: the probe exits


def sealkit_cli() -> list[str]:
    return [sys.executable, "-m", "sealkit"]


def json_get(service: Service, path: str) -> Any:
    import json

    doc = json.loads(service.get(path))
    assert doc.get("status") == "success", doc
    return doc["data"]
