"""``import sealkit`` stays lean: ``sealkit run`` pays for it before every program.

rich, psutil and pyelftools are imported only by the code that uses them
(rendering, auditing, ELF files), never by the package itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

HEAVY = ("rich", "psutil", "elftools", "sortedcontainers", "hypothesis", "subprocess")


def test_import_sealkit_loads_no_heavy_dependency(
    python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    proc = python(
        "import json, sys; import sealkit; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
