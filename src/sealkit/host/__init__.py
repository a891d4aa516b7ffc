"""The host audit: what is sealed on this host, and what it offers for sealing.

==========================  ===================================================
:mod:`.audit`               the audit's Python API in one import (re-exports)
:mod:`.classify`            what each mapping is (text, rodata, relro, data, ...)
:mod:`.sweep`               every process of the host (``sealkit audit``)
:mod:`.maps`                every mapping of one process (``sealkit maps``)
:mod:`.requirements`        ``--require``: what a sweep must show
:mod:`.outputs`             a sweep as JSON and for Prometheus
:mod:`.mapsvg`              one process's address space as an SVG picture
:mod:`.elf`                 the sealing marker in ELF files (``sealkit elf``)
:mod:`.environment`         what this kernel, libc and process allow (``sealkit check``)
==========================  ===================================================

The files behind mappings are read with :mod:`sealkit._os.elf` and
``/proc`` with :mod:`sealkit._os.procfs`.
"""
