"""Build step for the one C extension; everything else is in pyproject.toml.

``sealkit._os._fastsys`` is the syscall fast path of ``sealkit._os.syscalls``.
It is optional: without a C compiler the install still succeeds and sealkit
falls back to ctypes (slower, same behaviour).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("sealkit._os._fastsys", ["src/sealkit/_os/_fastsys.c"], optional=True)
    ]
)
