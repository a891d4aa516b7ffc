"""Build step for the one C extension; everything else is in pyproject.toml.

``sealkit._fastsys`` is the syscall fast path of ``sealkit._syscalls``. It is
optional: without a C compiler the install still succeeds and sealkit falls
back to ctypes (slower, same behaviour).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sealkit._fastsys", ["src/sealkit/_fastsys.c"], optional=True)])
