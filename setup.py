"""Build step for sealkit's C parts; everything else is in pyproject.toml.

Both are optional: without a C compiler the install still succeeds.

* ``sealkit._os._fastsys``: the syscall fast path of ``sealkit._os.syscalls``
  (without it sealkit falls back to ctypes: slower, same behaviour), and the
  smaps readers, scanner, classifier and JSON writers of the audit
  (without them ``sealkit._os.procfs`` and ``sealkit.host`` do the same in
  Python).
* ``sealkit/_os/libsealexec.so``: the loader-side library of ``sealkit exec``,
  a data file of the package built from ``_sealexec.c`` by
  ``sealkit/_os/sealexec.py`` (without it ``sealkit exec`` says so in one line
  and exits 2, and ``sealkit check`` reports it missing).
"""

from __future__ import annotations

import os
import runpy

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "sealkit", "_os")


class BuildExt(build_ext):
    """build_ext, then libsealexec.so next to the extension (never fatal)."""

    def run(self) -> None:
        super().run()
        editable = self.inplace or getattr(self, "editable_mode", False)
        target = OS_DIR if editable else os.path.join(self.build_lib, "sealkit", "_os")
        # by path, not imported: sealkit is not importable while it is built
        builder = runpy.run_path(os.path.join(OS_DIR, "sealexec.py"))
        cc = os.environ.get("CC")
        compiler_so = getattr(self.compiler, "compiler_so", None)
        if not cc and compiler_so:
            cc = compiler_so[0]
        why = builder["build"](os.path.join(target, builder["LIBRARY_NAME"]), cc=cc)
        if why:
            self.warn(f"libsealexec.so not built ({why}): `sealkit exec` will not be available")


setup(
    ext_modules=[
        Extension("sealkit._os._fastsys", ["src/sealkit/_os/_fastsys.c"], optional=True)
    ],
    cmdclass={"build_ext": BuildExt},
)
