"""``read_smaps(counters=False)`` keeps everything but the counters."""

from __future__ import annotations

import subprocess
import time

from sealkit._os import procfs
from sealkit._os.procfs import Vma


def _layout(vmas: list[Vma]) -> list[Vma]:
    return [Vma(v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path, v.vmflags) for v in vmas]


def test_layout_only_smaps_matches_the_full_parse() -> None:
    # A process that sits still (once its loader is done), so that reads agree.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        full = procfs.read_smaps(sleeper.pid)
        for _ in range(100):
            time.sleep(0.01)
            full, previous = procfs.read_smaps(sleeper.pid), full
            if _layout(full) == _layout(previous):
                break
        layout = procfs.read_smaps(sleeper.pid, counters=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert layout == _layout(full)
    assert len(layout) > 5 and all(v.vmflags for v in layout)
    assert all(v.fields == {} for v in layout) and all(v.fields for v in full)
