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
