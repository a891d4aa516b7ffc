"""A demanding workload, run once as a control and once after
``sealkit.harden(level="all", imports=True)``: ``python hardening_workload.py
control|hardened``. Prints one JSON line; the results must be identical.

Hardening happens before the workload imports anything, so every extension
module below is loaded (and, hardened, sealed by the import hook) later.
"""

from __future__ import annotations

import os
import sys

import sealkit
from sealkit._os import procfs

MODE = sys.argv[1]
BEFORE = set(sys.modules)
if MODE == "hardened":
    sealkit.harden(level="all", imports=True)

MODULES = [
    "abc",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "base64",
    "binascii",
    "bisect",
    "bz2",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "colorsys",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "contextvars",
    "copy",
    "csv",
    "ctypes",
    "ctypes.util",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "email",
    "email.mime.text",
    "enum",
    "errno",
    "fcntl",
    "filecmp",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "getopt",
    "gettext",
    "glob",
    "graphlib",
    "grp",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "html.parser",
    "http.client",
    "http.cookies",
    "imaplib",
    "importlib.metadata",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "logging.handlers",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "mmap",
    "multiprocessing",
    "netrc",
    "numbers",
    "operator",
    "optparse",
    "pathlib",
    "pickle",
    "pickletools",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "pprint",
    "pyexpat",
    "queue",
    "quopri",
    "random",
    "re",
    "reprlib",
    "resource",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "stat",
    "statistics",
    "string",
    "stringprep",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "termios",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "tomllib",
    "trace",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
    "zoneinfo",
    "_json",
    "_pickle",
    "_datetime",
    "_heapq",
    "_bisect",
    "_csv",
    "_random",
    "_struct",
    "_posixsubprocess",
    "_elementtree",
    "_multibytecodec",
    "_codecs_jp",
    "_sha256",
    "_blake2",
    "_queue",
    "_statistics",
    "_contextvars",
    "_uuid",
    "_zoneinfo",
]

import importlib  # noqa: E402
import json  # noqa: E402  (after harden: it loads the _json extension)

for name in MODULES:
    importlib.import_module(name)

import bz2  # noqa: E402
import concurrent.futures  # noqa: E402
import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import decimal  # noqa: E402
import hashlib  # noqa: E402
import lzma  # noqa: E402
import math  # noqa: E402
import mmap  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
import zlib  # noqa: E402

results: dict[str, object] = {}

# ctypes: calls into libc and libm, a Python callback through a libffi closure.
libc = ctypes.CDLL(None)
libm = ctypes.CDLL(ctypes.util.find_library("m"))
libm.cos.restype = ctypes.c_double
libm.cos.argtypes = [ctypes.c_double]
values = (ctypes.c_int * 8)(5, 3, 9, 1, 7, 2, 8, 4)
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
libc.qsort(values, len(values), ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
results["ctypes"] = [libc.strlen(b"sealkit"), round(libm.cos(0.5), 12), list(values)]


# Threads hashing in parallel.
def digest(i: int) -> str:
    return hashlib.sha256(str(i).encode() * 10000).hexdigest()


with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results["threads"] = list(pool.map(digest, range(64))) == [digest(i) for i in range(64)]
threads_out: list[int] = []
workers = [
    threading.Thread(target=lambda n=n: threads_out.append(sum(range(n)))) for n in range(20)
]
for w in workers:
    w.start()
for w in workers:
    w.join()
results["raw threads"] = sorted(threads_out)

# Subprocess, fork, multiprocessing (fork context: the children inherit the seals).
results["subprocess"] = subprocess.run(
    [sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, check=True
).stdout
read_fd, write_fd = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_fd)
    os.write(write_fd, json.dumps({"sum": sum(range(1000)), "sqrt": math.sqrt(2)}).encode())
    os._exit(7)
os.close(write_fd)
with os.fdopen(read_fd) as fh:
    results["fork"] = [json.loads(fh.read()), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]
with multiprocessing.get_context("fork").Pool(2) as mp_pool:
    results["multiprocessing"] = mp_pool.map(abs, [-1, -2, -3])

# JSON, sqlite3, decimal, compression, hashing, XML.
doc = {"a": [1, 2.5, "x" * 100, None, True], "b": {"c": list(range(100))}}
results["json"] = json.loads(json.dumps(doc)) == doc
with tempfile.TemporaryDirectory() as tmp:
    db = sqlite3.connect(os.path.join(tmp, "w.db"))
    db.execute("create table t (k integer primary key, v text, n real)")
    db.executemany("insert into t (v, n) values (?, ?)", [(f"v{i}", i / 3) for i in range(1000)])
    db.commit()
    results["sqlite"] = list(
        db.execute("select count(*), sum(length(v)), round(avg(n), 6) from t").fetchone()
    )
    db.close()
decimal.getcontext().prec = 50
results["decimal"] = str(decimal.Decimal(1) / decimal.Decimal(7))
blob = os.urandom(0) + b"sealkit " * 5000
results["compression"] = [
    zlib.decompress(zlib.compress(blob)) == blob,
    lzma.decompress(lzma.compress(blob)) == blob,
    bz2.decompress(bz2.compress(blob)) == blob,
]
results["hashes"] = [
    hashlib.sha3_256(b"x").hexdigest(),
    hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1000).hex(),
    hashlib.blake2b(b"x").hexdigest(),
]
context = ssl.create_default_context()
results["ssl"] = [context.verify_mode == ssl.CERT_REQUIRED, len(ssl.RAND_bytes(16))]
root = ET.fromstring("<r><i n='1'/><i n='2'/></r>")
results["xml"] = [i.get("n") for i in root]
results["codecs"] = "シール".encode("cp932").hex()

# mmap, select, signals, big allocations handed back to the kernel.
with mmap.mmap(-1, 1 << 20) as m:
    m[:5] = b"hello"
    results["mmap"] = m[:5].decode()
rfd, wfd = os.pipe()
os.write(wfd, b"!")
poller = select.poll()
poller.register(rfd, select.POLLIN)
results["poll"] = [fd for fd, _ in poller.poll(1000)] == [rfd]
os.close(rfd)
os.close(wfd)
received: list[int] = []
signal.signal(signal.SIGUSR1, lambda sig, frame: received.append(sig))
signal.raise_signal(signal.SIGUSR1)
results["signal"] = received == [signal.SIGUSR1]
chunks = [bytearray(1 << 20) for _ in range(200)]
del chunks
results["malloc_trim"] = libc.malloc_trim(0) in (0, 1)
random.seed(7)
results["random"] = [random.random() for _ in range(3)]

modules = sorted(set(MODULES) & set(sys.modules))
later = {
    name: os.path.realpath(module.__file__)
    for name, module in sys.modules.items()
    if name not in BEFORE and (getattr(module, "__file__", None) or "").endswith(".so")
}
smaps = procfs.read_smaps()
unsealed = {
    name: sorted({v.perms for v in smaps if v.path == path and not v.sealed})
    for name, path in later.items()
}
from sealkit.sealing.hardening import hook_reports  # noqa: E402

hook_sweeps = len(hook_reports())
print(
    json.dumps(
        {
            "results": results,
            "modules": modules,
            "imported later": sorted(later),
            "unsealed later extensions": {k: v for k, v in unsealed.items() if v},
            "sealed vmas": sum(1 for v in smaps if v.sealed),
            "hook sweeps": hook_sweeps,
        }
    )
)
