"""The C fast path (sealkit._os._fastsys) and the ctypes fallback behave the same.

CI installs sealkit with its extension built, so the fast path must be in
use there; the fallback is what an install without a compiler gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sealkit._os.syscalls as sc

PROBE = r"""
import json, sealkit._os.syscalls as sc
from sealkit.errors import KernelError, SealkitError
out = {"fast": sc.FAST_PATH}
def record(name, fn, *args):
    try:
        value = fn(*args)
        out[name] = ["ok", value if not isinstance(value, int) or value < 1 << 20 else "addr"]
    except SealkitError as exc:
        out[name] = [type(exc).__name__, getattr(exc, "errno", None)]
base = sc.mmap(0, 4 * 4096, 3, 0x22)
record("mseal_unaligned", sc.mseal, base + 1, 4096)
record("mseal_flags", sc.mseal, base, 4096, 1)
record("mseal_overflow", sc.mseal, base, -1)
record("mseal_huge", sc.mseal, base, 1 << 47)
record("mseal_too_wide", sc.mseal, base, 1 << 70)
record("mseal_type", sc.mseal, "x", 1)
record("mseal", sc.mseal, base, 4096)
record("munmap_sealed", sc.munmap, base, 4 * 4096)
record("mprotect_sealed", sc.mprotect, base, 4096, 1)
record("mprotect_ok", sc.mprotect, base + 4096, 4096, 1)
record("mmap_badfd", sc.mmap, 0, 4096, 1, 0x2, 1 << 40)
record("mmap_negfd", sc.mmap, 0, 4096, 1, 0x2, -5)
record("mmap_len0", sc.mmap, 0, 0, 3, 0x22)
record("mmap_fd_too_wide", sc.mmap, 0, 4096, 1, 0x2, -(1 << 70))
record("munmap_unaligned", sc.munmap, base + 1, 4096)
record("brk", sc.brk, 0)
print(json.dumps(out))
"""


def _probe(python, **env: str) -> dict[str, object]:
    done = python(PROBE, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.kernel
def test_fast_path_and_fallback_agree(python) -> None:
    fast = _probe(python)
    slow = _probe(python, SEALKIT_NO_FASTSYS="1")
    assert slow.pop("fast") is False
    fast_used = fast.pop("fast")
    assert fast == slow
    # Spot-check the answers themselves (scenarios probe/1.1, 1.2, 1.5, 3.x, 5.x).
    assert fast["mseal_unaligned"] == ["InvalidArgumentError", 22]
    assert fast["mseal_flags"] == ["InvalidArgumentError", 22]
    assert fast["mseal_overflow"] == ["InvalidArgumentError", 22]
    assert fast["mseal_huge"] == ["UnmappedError", 12]
    assert fast["mseal_too_wide"] == ["ArgumentError", None]
    assert fast["mseal_type"] == ["ArgumentTypeError", None]
    assert fast["munmap_sealed"] == ["SealedError", 1]
    assert fast["mprotect_sealed"] == ["SealedError", 1]
    assert fast["mprotect_ok"] == ["ok", None]
    assert fast["mmap_badfd"][0] != "ok"
    assert fast["mmap_negfd"][0] != "ok"
    assert fast["mmap_len0"] == ["InvalidArgumentError", 22]
    assert fast["mmap_fd_too_wide"] == ["ArgumentError", None]
    assert fast_used is any(Path(sc.__file__).parent.glob("_fastsys*.so"))


def test_fast_path_is_built_where_installed() -> None:
    built = any(Path(sc.__file__).parent.glob("_fastsys*.so"))
    assert sc.FAST_PATH is built
