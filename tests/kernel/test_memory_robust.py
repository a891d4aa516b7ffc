"""The safe API under fork, misuse and secrets, on the real kernel.

* A child forked while another thread holds the sealing lock can use
  ``Pages``/``freeze`` (issue 13).
* Refusals of heap objects say what to do instead, and the advice works;
  ``seal(x)`` returns what the call for ``x``'s kind returns (issue 16).
* ``freeze(..., secret=True)``: locked, excluded from core dumps, no copy
  left in sealkit's buffers; and what sealing does not stop, executed: a
  ``/proc/self/mem`` write changes a frozen value (issue 14).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.kernel

RunPython = Callable[..., subprocess.CompletedProcess[str]]


def _last_json(proc: subprocess.CompletedProcess[str]) -> object:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_child_forked_while_another_thread_holds_the_lock_can_seal(python: RunPython) -> None:
    # A thread is inside a Pages method (holding the module's lock) when the
    # main thread forks. The child has no such thread: it must still be able
    # to make, write and seal pages. The holder lets go after a short while;
    # fork may wait for that, but the child must never wait forever.
    proc = python(
        textwrap.dedent(
            """
            import json, os, signal, threading, time
            import sealkit
            from sealkit.sealing import pages

            held = threading.Event()
            def holder():
                with pages._LOCK:
                    held.set()
                    time.sleep(1.0)
            t = threading.Thread(target=holder)
            t.start()
            held.wait()
            pid = os.fork()
            if pid == 0:
                signal.alarm(10)  # the hang ends here, as a failure
                p = sealkit.Pages(4096)
                p.write(b"child")
                frozen = sealkit.freeze(b"child secret")
                ok = bytes(frozen) == b"child secret" and sealkit.is_sealed(frozen)
                p.close()
                os._exit(0 if ok and p.closed else 3)
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            t.join()
            # The parent's lock still works too.
            print(json.dumps({"child": status, "parent": bytes(sealkit.freeze(b"x")).decode()}))
            """
        )
    )
    assert _last_json(proc) == {"child": 0, "parent": "x"}


REFUSALS = textwrap.dedent(
    """
    import array, ctypes, json, mmap
    import sealkit
    try:
        import numpy
    except ImportError:
        numpy = None

    targets = {
        "bytes": b"api-key-123",
        "bytearray": bytearray(b"\\x01\\x02\\x03"),
        "str": "text",
        "array": array.array("i", [1, -2, 3]),
        "memoryview": memoryview(b"viewed"),
        "ctypes": ctypes.create_string_buffer(b"c buffer"),
    }
    if numpy is not None:
        targets["numpy"] = numpy.arange(12, dtype=numpy.int32).reshape(3, 4)
        targets["numpy, not contiguous"] = numpy.arange(16.0).reshape(4, 4)[:, ::2]
    out = {}
    for name, x in targets.items():
        try:
            sealkit.seal(x)
            out[name] = "sealed?!"
            continue
        except sealkit.UnsafeTargetError as exc:
            message = str(exc)
        advice = message.partition("a sealed read-only copy of it (x): ")[2]
        copy = eval(advice, {"sealkit": sealkit, "numpy": numpy, "x": x})
        if numpy is not None and isinstance(x, numpy.ndarray):
            same = (copy == x).all() and copy.shape == x.shape and copy.dtype == x.dtype
            writable = copy.flags.writeable
        else:
            expected = x.encode() if isinstance(x, str) else x
            same = copy.tobytes() == memoryview(expected).tobytes()
            if isinstance(x, array.array):
                same = same and copy.tolist() == x.tolist()
            writable = not copy.readonly
        out[name] = [advice, bool(same), bool(sealkit.is_sealed(copy)), bool(writable),
                     "\\n" not in message]
    m = mmap.mmap(-1, 4096)
    p = sealkit.Pages(4096)
    f = sealkit.map_file(__import__("sys").executable)
    by_seal, by_seal_mmap = sealkit.seal(m), sealkit.seal_mmap(m)
    out["contract"] = {
        "mmap": [type(by_seal).__name__, by_seal == by_seal_mmap,
                 by_seal.length == 4096 if by_seal else None],
        "pages": [sealkit.seal(p), p.sealed],
        "file": sealkit.seal(f),
    }
    print(json.dumps(out))
    """
)


def test_refusals_say_what_to_do_instead_and_the_advice_works(python: RunPython) -> None:
    out = _last_json(python(REFUSALS))
    assert isinstance(out, dict)
    contract = out.pop("contract")
    kinds = {"bytes", "bytearray", "str", "array", "memoryview", "ctypes"}
    assert kinds <= set(out), out
    for name, result in out.items():
        _advice, same, sealed, writable, one_line = result
        assert (same, sealed, writable, one_line) == (True, True, False, True), (name, result)
    assert out["bytes"][0] == out["bytearray"][0] == "sealkit.freeze(x)"
    # One contract: seal(x) returns what the call for x's kind returns.
    assert contract == {"mmap": ["SealedMmap", True, True], "pages": [None, True], "file": None}


def test_numpy_refusal_advice_works(python: RunPython) -> None:
    pytest.importorskip("numpy", reason="numpy is not installed (not a dependency)")
    out = _last_json(python(REFUSALS))
    assert isinstance(out, dict)
    assert out["numpy"] == [
        "numpy.frombuffer(sealkit.freeze(x), dtype=x.dtype).reshape(x.shape)",
        True, True, False, True,
    ]  # fmt: skip
    advice, *checks = out["numpy, not contiguous"]
    assert "numpy.ascontiguousarray(x)" in advice and checks == [True, True, False, True]


# --- freeze(..., secret=True) and what sealing does not stop -------------------

SECRET_FLAGS = textwrap.dedent(
    """
    import json, sealkit
    from sealkit._os import procfs
    from sealkit.sealing._buffers import buffer_span

    def vmlck():
        line = next(l for l in open("/proc/self/status") if l.startswith("VmLck:"))
        return int(line.split()[1])

    out = {}
    for secret in (False, True):
        before = vmlck()
        view = sealkit.freeze(b"k" * 5000, secret=secret)
        addr, _ = buffer_span(view)
        (vma,) = [v for v in procfs.read_smaps() if v.start <= addr < v.end]
        out[str(secret)] = {
            "flags": sorted(set(vma.vmflags) & {"lo", "dd", "sl"}),
            "locked kB": vma.fields.get("Locked"),
            "size kB": vma.fields.get("Size"),
            "VmLck grew kB": vmlck() - before,
            "same": bytes(view) == b"k" * 5000,
        }
    try:
        sealkit.freeze(b"x", secret=1)
    except sealkit.ArgumentTypeError as exc:
        out["bad flag"] = str(exc)
    print(json.dumps(out))
    """
)


def test_freeze_secret_locks_the_pages_and_leaves_them_out_of_core_dumps(
    python: RunPython,
) -> None:
    out = _last_json(python(SECRET_FLAGS))
    assert out == {
        "False": {"flags": ["sl"], "locked kB": 0, "size kB": 8, "VmLck grew kB": 0, "same": True},
        "True": {"flags": ["dd", "lo", "sl"], "locked kB": 8, "size kB": 8,
                 "VmLck grew kB": 8, "same": True},
        "bad flag": "secret must be a bool, not int",
    }  # fmt: skip


# Scans every readable mapping of the process (through /proc/self/mem, into
# one preallocated buffer) for the secret, except the sealed pages, the
# needle and the scan buffer themselves. The secret is read from
# /dev/urandom straight into a bytearray, so Python makes no copy of it.
SECRET_COPIES = textwrap.dedent(
    """
    import ctypes, json, os, sys
    import sealkit
    from sealkit._os import procfs
    from sealkit.sealing._buffers import buffer_span

    N = 48
    data = bytearray(N)
    with open("/dev/urandom", "rb", buffering=0) as rnd:
        assert rnd.readinto(data) == N
    frozen = sealkit.freeze(data, secret=True)
    if sys.argv[1] == "caller wipes":
        ctypes.memset((ctypes.c_char * N).from_buffer(data), 0, N)

    mem = os.open("/proc/self/mem", os.O_RDONLY)
    sealed_at, _ = buffer_span(frozen)
    needle = bytearray(N)
    assert os.preadv(mem, [needle], sealed_at) == N
    chunk = bytearray(1 << 20)
    spans = [(sealed_at, 4096), buffer_span(needle), buffer_span(chunk)]
    skip = [(lo, lo + n) for lo, n in spans]
    found, scanned = [], 0
    for vma in procfs.read_maps():
        if not vma.perms.startswith("r") or vma.path in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
            continue
        if vma.end - vma.start > 1 << 30:
            continue
        addr = vma.start
        while addr < vma.end:
            size = min(len(chunk), vma.end - addr)
            try:
                got = os.preadv(mem, [memoryview(chunk)[:size]], addr)
            except OSError:
                break
            at = chunk.find(needle, 0, got)
            while at >= 0:
                where = addr + at
                if not any(lo <= where < hi for lo, hi in skip):
                    found.append(hex(where))
                at = chunk.find(needle, at + 1, got)
            scanned += got
            addr += max(got, 1) if got else vma.end - addr
    print(json.dumps({"copies": found, "caller buffer": hex(buffer_span(data)[0]),
                      "scanned MiB": scanned >> 20}))
    """
)


def test_freeze_secret_leaves_no_copy_outside_the_sealed_pages(python: RunPython) -> None:
    # Control: while the caller's own buffer still holds the secret, the scan
    # finds it there (and nowhere else): the scan can see a copy.
    control = _last_json(python(SECRET_COPIES, "caller keeps"))
    assert isinstance(control, dict) and control["scanned MiB"] >= 1
    assert control["copies"] == [control["caller buffer"]], control
    # Once the caller wipes its buffer, no copy is left anywhere: freeze made
    # none of its own.
    wiped = _last_json(python(SECRET_COPIES, "caller wipes"))
    assert isinstance(wiped, dict) and wiped["copies"] == [], wiped


SECRET_FAILS = textwrap.dedent(
    """
    import ctypes, json, sys
    import sealkit
    from sealkit._os import syscalls
    from sealkit.errors import SealingDeniedError
    from sealkit.sealing import pages

    seen = []
    real_munmap, real_mseal = syscalls.munmap, pages._mseal_call
    def munmap(addr, length):
        seen.append(ctypes.string_at(addr, 16))  # what the pages held when unmapped
        real_munmap(addr, length)
    def mseal(addr, length, flags=0):
        if length:
            raise SealingDeniedError(1, "mseal", addr, length)
        real_mseal(addr, length, flags)
    syscalls.munmap, pages._mseal_call = munmap, mseal
    out = {}
    for secret in (False, True):
        try:
            sealkit.freeze(b"s3cr3t-s3cr3t-s3cr3t", secret=secret)
        except SealingDeniedError:
            out[str(secret)] = seen.pop().decode("latin-1")
    print(json.dumps(out))
    """
)


def test_freeze_secret_zeroes_the_pages_when_sealing_fails(python: RunPython) -> None:
    out = _last_json(python(SECRET_FAILS))
    assert out == {"False": "s3cr3t-s3cr3t-s3", "True": "\0" * 16}


PROC_MEM = textwrap.dedent(
    """
    import json, os, sealkit
    from sealkit._os import syscalls
    from sealkit.errors import KernelError
    from sealkit.sealing._buffers import buffer_span

    out = {}
    for secret in (False, True):
        frozen = sealkit.freeze(b"api-key-123", secret=secret)
        fd = os.open("/proc/self/mem", os.O_RDWR)
        try:
            written = os.pwrite(fd, b"PWNED", buffer_span(frozen)[0])
        except OSError as exc:
            written = f"{exc.errno}"
        finally:
            os.close(fd)
        out[str(secret)] = [written, bytes(frozen).decode(), sealkit.is_sealed(frozen),
                            frozen.readonly]
    # process_vm_writev does not force: read-only pages stay out of its reach.
    try:
        syscalls.process_vm_writev(os.getpid(), [(buffer_span(frozen)[0], 5)], b"owned")
        out["process_vm_writev"] = "written"
    except KernelError as exc:
        out["process_vm_writev"] = exc.errno
    print(json.dumps(out))
    """
)


def test_root_overwrites_a_frozen_value_through_proc_self_mem(python: RunPython) -> None:
    # What sealing does not promise, executed: /proc/PID/mem writes use
    # FOLL_FORCE and land on sealed read-only pages (this kernel is built
    # with CONFIG_PROC_MEM_ALWAYS_FORCE: proc_mem.force_override=always).
    # secret=True does not help against this attacker either.
    out = _last_json(python(PROC_MEM))
    assert isinstance(out, dict)
    if out["False"][0] in ("5", "1"):  # EIO / EPERM: force_override=never or ptrace
        pytest.skip("this kernel refuses forced /proc/PID/mem writes (proc_mem.force_override)")
    assert out == {
        "False": [5, "PWNEDey-123", True, True],
        "True": [5, "PWNEDey-123", True, True],
        "process_vm_writev": 14,  # EFAULT
    }
