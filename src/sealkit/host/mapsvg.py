"""Draw an address space as SVG (``sealkit maps PID --svg FILE``).

A vertical strip, low addresses at the top (the order of
``/proc/PID/maps``). Each *VMA group* (adjacent mappings with the same path,
permissions, kind and seal) is one ``<rect class="vma kind-KIND">``; sealed
groups also carry the class ``sealed``, a hatched overlay, a thick red
outline and a SEALED badge, so they stand out. Heights grow with the
logarithm of the size (a page stays visible next to a gigabyte). Unmapped
gaps are compressed to a fixed-height break labelled with their size.
Objects (files) are named once, beside a bracket spanning their groups;
every shape has a ``<title>`` tooltip with its range, permissions and path.

Pure: takes :class:`sealkit.host.maps.ProcessMaps`, returns text. Written by
hand with XML escaping (no dependency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, NamedTuple
from xml.sax.saxutils import escape as _xml_escape
from xml.sax.saxutils import quoteattr as _xml_quoteattr

from ..errors import ArgumentTypeError
from ..text import human_size, label
from .classify import KINDS
from .maps import MappedRegion, ProcessMaps

__all__ = ["KIND_COLOURS", "VmaGroup", "group_regions", "render_svg"]


def escape(text: str) -> str:
    """XML character data: names and paths through :func:`sealkit.text.label`
    first, as in every other output of the audit (XML 1.0 has no way to
    write most control characters, nor undecodable bytes)."""
    return _xml_escape(label(text))


def quoteattr(text: str) -> str:
    return _xml_quoteattr(label(text))


KIND_COLOURS: Final = {
    "text": "#f0a04b",
    "rodata": "#f5d778",
    "relro": "#a8cbe8",
    "data": "#5f9bd6",
    "file": "#cbb7e8",
    "heap": "#93d493",
    "stack": "#4fbf8b",
    "anon": "#d7d7d7",
    "shm": "#e9a6c8",
    "system": "#a9a9a9",
    "guard": "#f6f6f6",
}

_WIDTH: Final = 980
_ADDR_X: Final = 150  # right edge of the address column
_BAR_X: Final = 162
_BAR_W: Final = 330
_LABEL_X: Final = _BAR_X + _BAR_W + 86
_TOP: Final = 96
_GAP_BIG: Final = 26
_GAP_SMALL: Final = 4
_BIG_GAP_BYTES: Final = 1 << 16


class VmaGroup(NamedTuple):
    """Adjacent mappings with equal path, permissions, kind and seal."""

    start: int
    end: int
    perms: str
    kind: str
    sealed: bool
    path: str
    mappings: int

    @property
    def size(self) -> int:
        return self.end - self.start


def group_regions(regions: Sequence[MappedRegion]) -> list[VmaGroup]:
    """Merge adjacent regions that look the same into :class:`VmaGroup` s."""
    groups: list[VmaGroup] = []
    for region in regions:
        v = region.vma
        sealed = bool(v.sealed)
        if groups:
            last = groups[-1]
            if (last.end, last.path, last.perms, last.kind, last.sealed) == (
                v.start, v.path, v.perms, region.kind, sealed,
            ):  # fmt: skip
                groups[-1] = VmaGroup(
                    last.start, v.end, last.perms, last.kind, sealed, last.path, last.mappings + 1
                )
                continue
        groups.append(VmaGroup(v.start, v.end, v.perms, region.kind, sealed, v.path, 1))
    return groups


def _height(size: int) -> int:
    pages = max(size // 4096, 1)
    return int(min(14 + 5.5 * math.log2(pages), 60))


def _short(path: str) -> str:
    if path.startswith("/"):
        return path.rstrip("/").rsplit("/", 1)[-1] or path
    return path


def render_svg(maps: ProcessMaps) -> str:
    """The SVG picture of ``maps`` (a complete standalone document)."""
    if not isinstance(maps, ProcessMaps):
        raise ArgumentTypeError(f"maps must be a ProcessMaps, not {type(maps).__name__}")
    groups = group_regions(maps.regions)
    out: list[str] = []
    y = _TOP
    shapes: list[str] = []
    labels: list[str] = []
    objects: list[tuple[str, int, int]] = []  # (path, y0, y1) runs of one file
    prev_end: int | None = None
    for group in groups:
        if prev_end is not None and group.start > prev_end:
            gap = group.start - prev_end
            if gap >= _BIG_GAP_BYTES:
                shapes.append(_gap(y, gap))
                y += _GAP_BIG
            else:
                y += _GAP_SMALL
        h = _height(group.size)
        shapes.append(_group_shape(group, y, h))
        labels.append(
            f'<text class="addr" x="{_ADDR_X}" y="{y + 11}" text-anchor="end">'
            f"{group.start:#014x}</text>"
        )
        if group.path and (group.path.startswith("/") or group.path.startswith("[")):
            if objects and objects[-1][0] == group.path:
                objects[-1] = (group.path, objects[-1][1], y + h)
            else:
                objects.append((group.path, y, y + h))
        y += h
        prev_end = group.end
    if prev_end is not None:
        y += 12
        labels.append(
            f'<text class="addr" x="{_ADDR_X}" y="{y}" text-anchor="end">{prev_end:#014x}</text>'
        )
    for path, y0, y1 in objects:
        mid = (y0 + y1) / 2
        labels.append(
            f'<path class="bracket" d="M{_LABEL_X - 20},{y0 + 1} h6 V{y1 - 1} h-6"/>'
            f'<text class="object" x="{_LABEL_X}" y="{mid + 4:.1f}">{escape(_short(path))}'
            f"<title>{escape(path)}</title></text>"
        )
    height = y + 40
    sealed = maps.sealed
    title = (
        f"pid {maps.pid} ({maps.command}): {len(maps.regions)} mappings, "
        f"{len(sealed)} sealed ({human_size(sum(r.vma.size for r in sealed))})"
    )
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="DejaVu Sans, Verdana, sans-serif" '
        f'font-size="11">'
    )
    out.append(f"<title>{escape('sealkit maps: ' + title)}</title>")
    out.append(_STYLE)
    out.append(f'<rect class="background" x="0" y="0" width="{_WIDTH}" height="{height}"/>')
    out.append(f'<text class="heading" x="16" y="26">{escape(title)}</text>')
    out.append(
        '<text class="note" x="16" y="44">addresses grow downwards; heights grow with the '
        "logarithm of the size; unmapped gaps are compressed</text>"
    )
    out.append(_legend())
    out.extend(shapes)
    out.extend(labels)
    out.append("</svg>")
    return "\n".join(out) + "\n"


_STYLE: Final = """<defs>
<pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="8" height="8" fill="none"/><line x1="0" y1="0" x2="0" y2="8" stroke="#b00000" stroke-width="3" stroke-opacity="0.55"/>
</pattern>
</defs>
<style>
.background { fill: #ffffff; }
.heading { font-size: 15px; font-weight: bold; fill: #222; }
.note { fill: #666; }
.addr { font-family: "DejaVu Sans Mono", monospace; font-size: 10px; fill: #555; }
.vma { stroke: #555; stroke-width: 0.8; }
.vma.kind-guard { stroke-dasharray: 3 2; }
.vma.sealed { stroke: #c00000; stroke-width: 3; }
.hatch { fill: url(#hatch); pointer-events: none; }
.kind { fill: #222; stroke: #ffffff; stroke-opacity: 0.7; stroke-width: 3px; paint-order: stroke; }
.badge { fill: #c00000; font-weight: bold; }
.gap { fill: #fafafa; stroke: #bbb; stroke-dasharray: 4 3; }
.gaptext { fill: #777; font-style: italic; stroke: #fafafa; stroke-width: 5px; paint-order: stroke; }
.object { fill: #222; }
.bracket { fill: none; stroke: #888; }
.legendtext { fill: #333; }
</style>"""


def _group_shape(group: VmaGroup, y: int, h: int) -> str:
    classes = f"vma kind-{group.kind}" + (" sealed" if group.sealed else "")
    tip = (
        f"{group.start:#x}-{group.end:#x} {group.perms} {group.kind} "
        f"{human_size(group.size)}{' SEALED' if group.sealed else ''}"
        f"{' ' + group.path if group.path else ''}"
        f"{f' ({group.mappings} mappings)' if group.mappings > 1 else ''}"
    )
    parts = [
        f'<rect class={quoteattr(classes)} x="{_BAR_X}" y="{y}" width="{_BAR_W}" height="{h}" '
        f'fill="{KIND_COLOURS[group.kind]}" data-start="{group.start:#x}" '
        f'data-end="{group.end:#x}" data-kind="{group.kind}" '
        f'data-sealed="{str(group.sealed).lower()}" data-path={quoteattr(group.path)}>'
        f"<title>{escape(tip)}</title></rect>"
    ]
    if group.sealed:
        parts.append(
            f'<rect class="hatch" x="{_BAR_X}" y="{y}" width="{_BAR_W}" height="{h}"/>'
            f'<text class="badge" x="{_BAR_X + _BAR_W + 4}" y="{y + min(h, 22) - 6}">'
            "SEALED</text>"
        )
    text = f"{group.kind} {group.perms} {human_size(group.size)}"
    parts.append(f'<text class="kind" x="{_BAR_X + 6}" y="{y + min(h, 24) - 4}">{text}</text>')
    return "".join(parts)


def _gap(y: int, size: int) -> str:
    mid = y + _GAP_BIG / 2
    zig = " ".join(
        f"L{_BAR_X + i * 15 + 7.5},{mid - 4 if i % 2 else mid + 4}" for i in range(_BAR_W // 15)
    )
    return (
        f'<rect class="gap" x="{_BAR_X}" y="{y + 3}" width="{_BAR_W}" height="{_GAP_BIG - 6}"/>'
        f'<path class="bracket" d="M{_BAR_X},{mid} {zig}"/>'
        f'<text class="gaptext" x="{_BAR_X + _BAR_W / 2}" y="{mid + 4}" text-anchor="middle">'
        f"\u2248 {escape(human_size(size))} unmapped</text>"
    )


def _legend() -> str:
    parts = []
    x = 16
    for kind in KINDS:
        parts.append(
            f'<rect class="legend" x="{x}" y="58" width="12" height="12" '
            f'fill="{KIND_COLOURS[kind]}" stroke="#555" stroke-width="0.8"/>'
            f'<text class="legendtext" x="{x + 16}" y="68">{kind}</text>'
        )
        x += 22 + 7 * len(kind) + 10
    parts.append(
        f'<rect class="legend" x="{x}" y="58" width="12" height="12" fill="#fff" '
        f'stroke="#c00000" stroke-width="3"/><rect class="hatch" x="{x}" y="58" width="12" '
        f'height="12"/><text class="legendtext" x="{x + 16}" y="68">sealed</text>'
    )
    return "".join(parts)
