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
