"""``sealkit seal --pid PID | --comm NAME``: seal a process that is already running.

Stops every thread of the target for a few milliseconds, makes it call
``mseal`` on exactly the ranges ``harden()`` would choose in it, restores it
and lets it go (:mod:`sealkit.sealing.live`). ``--dry-run`` only reads: the
target is not stopped. Exit codes: 0 every target sealed and verified; 1 a
target was refused (one line each) or a check failed; 2 usage.
"""

# ruff: noqa: PLC0415 (imports are lazy on purpose: every command module is imported at start-up)

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

NAME = "seal"
HELP = "Seal the loaded code of a running process (ptrace; it is stopped for milliseconds)."
ORDER = 12
_COMM_LEN = 15  # TASK_COMM_LEN - 1: the kernel keeps this much of a command name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--pid", type=int, metavar="PID", help="the process to seal")
    who.add_argument(
        "--comm",
        metavar="NAME",
        help="the process whose command name is exactly NAME (not a glob: sealing is irreversible)",
    )
    parser.add_argument(
        "--all-matching",
        action="store_true",
        help="with --comm: seal every process of that name (e.g. nginx master and workers)",
    )
    parser.add_argument(
        "--level",
        choices=("code", "all"),
        default="code",
        help="code: text, read-only data, RELRO (default); all: whole objects",
    )
    parser.add_argument(
        "--system", action="store_true", help="also seal [vdso] and [vvar] (breaks CRIU and rr)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan; the target is not even stopped"
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/seal.schema.json)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="retry while the target's loader is busy for up to S seconds (default 5)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list every range, not just the summary"
    )


def _by_comm(name: str) -> list[int]:
    """Every process whose command name is ``name`` (as the kernel keeps it:
    at most 15 bytes), this one excepted."""
    wanted = os.fsencode(name)[:_COMM_LEN]
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                comm = f.read().rstrip(b"\n")
        except OSError:
            continue
        if comm == wanted:
            found.append(int(entry))
    return sorted(found)


def _usage(message: str) -> int:
    print(f"sealkit seal: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ...errors import SealkitError, TargetRefusedError
    from ...sealing.live import MAX_TIMEOUT, seal_process
    from ...text import printable

    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT):
        return _usage(f"--timeout must be above 0 and at most {MAX_TIMEOUT:.0f} seconds")
    if args.pid is not None:
        if args.all_matching:
            return _usage("--all-matching goes with --comm")
        if args.pid <= 0:
            return _usage(f"not a process id: {args.pid}")
        pids = [args.pid]
    else:
        if not args.comm or "\0" in args.comm or "/" in args.comm:
            return _usage(f"not a command name: {args.comm!r}")
        pids = _by_comm(args.comm)
        if not pids:
            print(f"sealkit seal: no process named {printable(args.comm)!r}", file=sys.stderr)
            return 1
        if len(pids) > 1 and not args.all_matching:
            shown = " ".join(map(str, pids[:10])) + (" ..." if len(pids) > 10 else "")
            return _usage(
                f"{len(pids)} processes are named {printable(args.comm)!r} ({shown}); "
                "pass --all-matching to seal them all, or --pid"
            )
    processes: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    failed = False
    for pid in pids:
        try:
            report = seal_process(
                pid, args.level, system=args.system, dry_run=args.dry_run, timeout=args.timeout
            )
        except TargetRefusedError as exc:
            refused.append({"pid": exc.pid, "reason": exc.reason, "message": exc.message})
            if not args.json:
                print(f"sealkit seal: {printable(str(exc))}", file=sys.stderr)
            continue
        except SealkitError as exc:
            refused.append({"pid": pid, "reason": "error", "message": str(exc)})
            if not args.json:
                print(f"sealkit seal: process {pid}: {printable(str(exc))}", file=sys.stderr)
            continue
        failed = failed or not report.ok
        processes.append(report.as_dict())
        if not args.json:
            print(str(report) if args.verbose else report.summary())
            for problem in report.problems:
                print(f"  problem: {printable(problem)}")
    if args.json:
        import json

        doc = {"schema": "sealkit.seal/1", "processes": processes, "refused": refused}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    return 1 if refused or failed else 0
