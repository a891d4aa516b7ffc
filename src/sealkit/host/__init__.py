"""The host audit: what is sealed on this host, and what it offers for sealing.

* :mod:`.audit`: every process, each sealed mapping classified (``sealkit audit``,
  ``sealkit maps``);
* :mod:`.mapsvg`: one process's address space as an SVG picture;
* :mod:`.elf`: the sealing marker and its neighbours in ELF files (``sealkit elf``);
* :mod:`.environment`: what this kernel, libc and process allow (``sealkit check``).
"""
