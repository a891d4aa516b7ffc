"""The sealing faces: seal memory this process owns, and harden its loaded code.

* :mod:`.memory`: the safe sealing API (``Pages``, ``freeze``, ``CodePages``,
  ``seal_mmap``, ``map_file``, ``seal``, ``is_sealed``, ``support``);
* :mod:`.hardening`: ``harden()``, sealing the interpreter's loaded ELF objects.

``sealkit`` re-exports the public names. ``sealkit.seal`` itself is the
public function :func:`~sealkit.seal.memory.seal`, so import this package's
modules with ``from sealkit.seal.NAME import ...``.
"""
