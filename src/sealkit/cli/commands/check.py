"""``sealkit check``: what this kernel and process offer for sealing.

A table by default (``--json`` for programs: every field the table shows,
schema ``sealkit/data/check.schema.json``); ``--require NAME`` (repeatable)
exits 1 with a one-line reason per unmet requirement, so a CI job can say
``sealkit check --require mseal``. The last rows list sealkit's optional
components (the C fast path, ...): present or not, and what is lost without.
"""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape
from rich.table import Table

from ...host.environment import REQUIREMENTS, EnvironmentReport, check_environment, unmet
from ..output import console, print_json

NAME = "check"
HELP = "Show whether this kernel and process support memory sealing (mseal)."
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="JSON (schema: sealkit/data/check.schema.json)"
    )
    parser.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="NAME",
        choices=list(REQUIREMENTS),
        help="exit 1 unless NAME holds (repeatable): "
        + "; ".join(f"{name}: {what}" for name, (what, _) in REQUIREMENTS.items()),
    )


def _yes_no(value: bool | None, good: bool = True) -> str:
    if value is None:
        return "[yellow]unknown[/]"
    colour = "green" if value == good else "red"
    return f"[{colour}]{'yes' if value else 'no'}[/]"


def _table(report: EnvironmentReport) -> Table:
    table = Table(title="sealkit check", show_lines=False)
    table.add_column("check", style="bold")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    # Every text from the system is escaped: "[vdso]" is not rich markup.
    table.add_row("kernel", escape(report.kernel_release), escape(report.arch))
    table.add_row(
        "mseal(2) available", _yes_no(report.mseal_available), escape(report.mseal_reason)
    )
    table.add_row(
        "smaps reports seals (sl)", _yes_no(report.smaps_reports_seals), escape(report.smaps_detail)
    )
    mappings = ", ".join(
        f"{name} {'sealed' if sealed else 'not sealed'}"
        for name, sealed in report.system_mappings.items()
    )
    table.add_row(
        "system mappings sealed",
        _yes_no(report.system_mappings_sealed),
        escape(mappings or "no [vdso]/[vvar] in this process"),
    )
    source = report.kernel_config_source or "no readable kernel config"
    table.add_row(
        "CONFIG_MSEAL_SYSTEM_MAPPINGS",
        escape(report.config_mseal_system_mappings or "") or "[yellow]unknown[/]",
        escape(f"{report.config_note} ({source})"),
    )
    table.add_row(
        "CONFIG_CHECKPOINT_RESTORE",
        escape(report.config_checkpoint_restore or "") or "[yellow]unknown[/]",
        "excludes CONFIG_MSEAL_SYSTEM_MAPPINGS when y",
    )
    table.add_row(
        "glibc",
        escape(report.glibc_version or "") or "[yellow]not glibc[/]",
        "exports mseal()"
        if report.glibc_mseal_wrapper
        else "no mseal() wrapper (sealkit uses syscall 462)",
    )
    seccomp = "unknown" if report.seccomp_mode is None else str(report.seccomp_mode_name)
    table.add_row(
        "seccomp (this process)",
        seccomp,
        f"mode {report.seccomp_mode}, {report.seccomp_filters} filter(s)"
        if report.seccomp_mode is not None
        else "no Seccomp field in /proc/self/status",
    )
    for component in report.components:
        table.add_row(
            escape(component.title),
            "[green]present[/]" if component.present else "[red]absent[/]",
            escape(component.detail)
            + ("; without it: " if component.present else "; so: ")
            + escape(component.without),
        )
    return table


def run(args: argparse.Namespace) -> int:
    report = check_environment()
    failures = {name: unmet(report, name) for name in dict.fromkeys(args.require)}
    if args.json:
        payload = report.to_json()
        payload["requirements"] = {
            name: {"met": reason is None, "reason": reason} for name, reason in failures.items()
        }
        print_json("check", payload)
    else:
        console().print(_table(report))
    failed = 0
    for name, reason in failures.items():
        if reason is not None:
            print(f"sealkit check: requirement {name!r} not met: {reason}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
