"""Real services for the slow live-sealing tests and ``benchmarks/bench_live.py``:
a multi-threaded Python service, nginx (nginx-light) master and workers, and a
bounded request loop against 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PY_SERVICE = r"""
import ctypes, ctypes.util, hashlib, http.server, os, signal, socketserver, sys, threading, zlib
import _ctypes
stop = threading.Event()
stats = {"hash": 0, "zlib": 0, "dl": 0, "bad": 0}
BLOB = os.urandom(1 << 20)
WANT = hashlib.sha256(BLOB).hexdigest()
def hasher():                       # C code, GIL released
    while not stop.is_set():
        if hashlib.sha256(BLOB).hexdigest() != WANT:
            stats["bad"] += 1
        stats["hash"] += 1
def squeezer():
    while not stop.is_set():
        if zlib.decompress(zlib.compress(BLOB[:65536])) != BLOB[:65536]:
            stats["bad"] += 1
        stats["zlib"] += 1
LIBS = [n for n in ("libz.so.1", "libbz2.so.1.0", "liblzma.so.5", "libexpat.so.1", "libffi.so.8",
                    "libuuid.so.1", "libsqlite3.so.0") if ctypes.util.find_library(n.split(".so")[0][3:])]
def loader():                       # dlopen and dlclose, over and over
    while not stop.is_set():
        for name in LIBS:
            lib = ctypes.CDLL(name)
            _ctypes.dlclose(lib._handle)
            stats["dl"] += 1
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = hashlib.sha256(self.path.encode()).hexdigest().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
server = S(("127.0.0.1", 0), H)
threads = [threading.Thread(target=f, daemon=True) for f in (hasher, hasher, squeezer, loader)]
threads.append(threading.Thread(target=server.serve_forever, daemon=True))
for t in threads: t.start()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
print(server.server_address[1], flush=True)
stop.wait()
server.shutdown()
print("stats", stats["hash"], stats["zlib"], stats["dl"], stats["bad"], flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class RequestLoop:
    """Requests to 127.0.0.1:port in a thread, bounded in count and time."""

    def __init__(
        self, port: int, check: bytes | None = None, limit: int = 100_000, seconds: float = 120
    ) -> None:
        self.port = port
        self.check = check
        self.limit = limit
        self.seconds = seconds
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        n = 0
        while not self._stop.is_set() and n < self.limit and time.monotonic() < deadline:
            n += 1
            try:
                status, body = http_get(self.port, f"/r{n}")
            except OSError as exc:
                self.failed.append(f"request {n}: {exc}")
                continue
            if status != 200 or (self.check is not None and body != self.check):
                self.failed.append(f"request {n}: status {status}")
            else:
                self.ok += 1

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


class Nginx:
    """nginx (nginx-light) master + workers on 127.0.0.1, in a private prefix.

    The binary is copied under a name of its own (``comm``, e.g.
    ``skngx-1a2b3c``), so that ``sealkit seal --comm`` can select exactly
    these processes and never another nginx on the machine."""

    @staticmethod
    def missing() -> str:
        """Why nginx cannot be run here, or ``""``."""
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        return "" if os.path.exists(exe) else "nginx is not installed (apt-get install nginx-light)"

    def __init__(self, workers: int = 4) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sealkit-nginx-"))
        self.dir.chmod(0o755)  # workers run as an unprivileged user
        self.comm = f"skngx-{os.urandom(3).hex()}"
        self.exe = str(self.dir / self.comm)
        shutil.copy2(shutil.which("nginx") or "/usr/sbin/nginx", self.exe)
        self.nworkers = workers
        (self.dir / "www").mkdir()
        self.body = b"sealed nginx\n" * 10
        (self.dir / "www" / "index.html").write_bytes(self.body)
        self.port = free_port()
        conf = f"""
worker_processes {workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body; proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fcgi; uwsgi_temp_path {self.dir}/uwsgi; scgi_temp_path {self.dir}/scgi;
    server {{ listen 127.0.0.1:{self.port}; root {self.dir}/www; location / {{ try_files /index.html =404; }} }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        subprocess.run(
            [self.exe, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(self.workers()) < workers:
            time.sleep(0.02)
        if len(self.workers()) < workers:
            raise TimeoutError("nginx did not start its workers")

    @property
    def master(self) -> int:
        return int((self.dir / "nginx.pid").read_text())

    def workers(self) -> list[int]:
        try:
            master = self.master
        except (OSError, ValueError):
            return []  # not written yet
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            if ppid == master:
                out.append(int(entry))
        return sorted(out)

    def reload(self) -> list[int]:
        old = set(self.workers())
        subprocess.run(
            [self.exe, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-s", "reload"],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            new = [w for w in self.workers() if w not in old]
            if len(new) >= self.nworkers:
                return new
            time.sleep(0.01)
        raise TimeoutError("nginx did not start new workers")

    def stop(self) -> int:
        master = self.master
        subprocess.run(
            [self.exe, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-s", "quit"],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{master}"):
            time.sleep(0.02)
        alive = os.path.exists(f"/proc/{master}")
        if alive:  # never leave it running: kill what is left
            for pid in [master, *self.workers()]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        return 1 if alive else 0

    def errors(self) -> str:
        try:
            return (self.dir / "error.log").read_text()
        except OSError:
            return ""


def python_service() -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, "-c", PY_SERVICE], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port
