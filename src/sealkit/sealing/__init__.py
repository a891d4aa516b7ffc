"""The sealing faces: seal memory this process owns, harden its loaded code, seal a running process.

The safe sealing API seals memory without surprises. Sealing is
irreversible: a sealed mapping cannot be unmapped, moved, or have its
protection changed until the process exits (docs/reference/linux.md rules
5-8). Sealing memory that someone else manages (the heap behind a
``bytes``, an allocator's arena, a numpy buffer) therefore breaks that
someone later, often with a crash far from the cause. The API only seals
whole pages that it can prove are exclusively owned:

* :class:`Pages`: private anonymous pages sealkit maps itself. Write, read,
  view, :meth:`Pages.protect`, :meth:`Pages.seal`. States move one way:
  ``open -> sealed`` or ``open -> closed``.
* :func:`freeze`: copy bytes into fresh pages, make them read-only, seal,
  and return a read-only ``memoryview`` (secrets, configuration);
  ``secret=True`` also locks them (``mlock``) and leaves them out of core
  dumps. Root or a ptrace-capable process can still overwrite them through
  ``/proc/PID/mem`` (docs/memory.md, "What sealing promises").
* :func:`seal_mmap`: seal an *anonymous* ``mmap.mmap`` the caller created,
  after checking in ``/proc/self/smaps`` that it is a whole, page-aligned
  anonymous mapping. File-backed mmaps are refused: CPython's ``resize()``
  truncates the file before the kernel refuses to move sealed pages (SIGBUS).
* :func:`map_file`: sealkit opens a file read-only itself, maps it
  ``PROT_READ | MAP_SHARED``, closes the descriptor and seals the mapping
  (:class:`SealedFile`): the safe way to seal a file mapping.
* :class:`CodePages`: W^X code pages. Machine code is written while the
  pages are ``rw-``, then one ``mprotect`` makes them ``r-x`` and they are
  sealed; the pages are never writable and executable at the same time.
* :func:`seal`: the one entry point for "seal this object"; anything that is
  not one of the above is refused with :class:`~sealkit.errors.UnsafeTargetError`
  before any system call, and nothing is sealed.
* :func:`is_sealed`, :func:`sealed_ranges`, :func:`~sealkit.support`:
  questions, no side effects.

The raw ``sealkit._os.syscalls.mseal(addr, length, flags=0)`` is private (no
stability promise) and **dangerous**: it seals whatever lies at ``addr``,
including memory the interpreter or an allocator will later try to free or
move.

Where each piece lives:

========================  =====================================================
:mod:`.pages`             :class:`Pages`, :class:`PageState`, :func:`freeze`
:mod:`.code`              :class:`CodePages`
:mod:`.mmaps`             :func:`seal_mmap`, :class:`SealedMmap`
:mod:`.files`             :func:`map_file`, :class:`SealedFile`
:mod:`.entry`             :func:`seal`
:mod:`.questions`         :func:`is_sealed`, :func:`sealed_ranges`
:mod:`._checks`           argument checks and refusals shared by the above
:mod:`._buffers`          views over raw memory and buffer addresses (C API)
:mod:`.hardening`         :func:`harden`: seal this interpreter's loaded code
:mod:`.exec`              ``sealkit exec``: any glibc program's loaded code,
                          sealed by a loader-side library (C, in ``_os``)
:mod:`.live`              :func:`seal_process`: seal another, running process
                          (``sealkit seal --pid``), with harden()'s planner
========================  =====================================================

:func:`support` (what sealing this process can do) is an OS probe, in
:mod:`sealkit._os.support`. ``sealkit`` re-exports the public names.
"""
