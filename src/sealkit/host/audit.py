"""What is sealed on this host: the audit's Python API in one place.

:func:`scan_host` (:mod:`.sweep`) sweeps ``/proc``: every process, and its
sealed mappings (``VmFlags: sl``) with their kind (:mod:`.classify`).
:func:`process_maps` (:mod:`.maps`) gives every mapping of one process,
classified (``sealkit maps``). :func:`to_json` and :func:`to_prometheus`
(:mod:`.outputs`) render a sweep; :func:`check_requirements`
(:mod:`.requirements`) evaluates ``--require``. The kinds, and how they are
told apart, are described in :mod:`.classify`.
"""

from __future__ import annotations

from ..text import human_size
from .classify import KINDS, SYSTEM_MAPPINGS, classify
from .maps import MappedRegion, ProcessMaps, process_maps
from .outputs import to_json, to_prometheus
from .requirements import Requirement, RequirementResult, check_requirements, parse_requirement
from .sweep import HostAudit, ProcessAudit, SealedMapping, default_jobs, scan_host

__all__ = [
    "KINDS",
    "SYSTEM_MAPPINGS",
    "HostAudit",
    "MappedRegion",
    "ProcessAudit",
    "ProcessMaps",
    "Requirement",
    "RequirementResult",
    "SealedMapping",
    "check_requirements",
    "classify",
    "default_jobs",
    "human_size",
    "parse_requirement",
    "process_maps",
    "scan_host",
    "to_json",
    "to_prometheus",
]
