"""The OS boundary: the only code that talks to the kernel and reads files.

* :mod:`.syscalls`: raw system calls through ``syscall(2)`` (the C fast path
  ``_fastsys`` or ctypes), the only module that loads libc, and the one place
  where a failed call becomes an exception;
* :mod:`.procfs`: ``/proc/PID/maps``, ``smaps``, ``status`` and kernel configs;
* :mod:`.files`: opening a file that must be regular, without blocking;
* :mod:`.support`: what sealing this process can do (``sealkit.support()``).

Private: the faces above (``sealkit.sealing``, ``sealkit.host``,
``sealkit.fidelity``, ``sealkit.analysis``) build on it, and ``sealkit``
re-exports what is public.
"""
