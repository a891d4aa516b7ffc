"""The OS boundary: the only code that talks to the kernel and reads files.

* :mod:`.syscalls`: raw system calls through ``syscall(2)`` (the C fast path
  ``_fastsys`` or ctypes), the only module that loads libc, and the one place
  where a failed call becomes an exception;
* :mod:`.procfs`: ``/proc/PID/maps``, ``smaps``, ``status`` and kernel configs;
* :mod:`.files`: opening a file that must be regular, without blocking;
* :mod:`.support`: what sealing this process can do (``sealkit.support()``);
* :mod:`.sealexec`: where ``libsealexec.so`` is and how it is built; the
  library itself (``_sealexec.c``) is C that glibc's loader loads into other
  programs for ``sealkit exec``, never into this one.
* :mod:`.ptrace`: the small ptrace layer live sealing stops a process with
  (seize, interrupt, registers, single-step, detach; x86_64), its one kernel
  call :func:`~sealkit._os.syscalls.ptrace_call`.

Private: the faces above (``sealkit.sealing``, ``sealkit.host``,
``sealkit.fidelity``, ``sealkit.analysis``) build on it, and ``sealkit``
re-exports what is public.
"""
