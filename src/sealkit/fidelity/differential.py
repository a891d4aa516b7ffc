"""Holding the model to the kernel: compare two runs of a trace, find the first divergence.

The runs are :class:`~sealkit.fidelity.target.TraceRun` s of the same trace
on two targets: the model's (``model``, whose ``?`` content tokens match
anything) and the reference's (``kernel``, the running kernel). Used by the
differential fuzzer (:mod:`sealkit.fidelity.fuzz`), ``sealkit replay --diff``
(:mod:`sealkit.fidelity.replay`) and the analyzer's ``--replay``.

What is compared, step by step
------------------------------
* the **result** of every call, exactly (kernel convention, model frame);
* the **layout** of each zone the trace uses, in the canonical merged form
  (:meth:`~sealkit.layout.Layout.merged` after
  :meth:`~sealkit.layout.Layout.project`): protection, shared, backing, file
  and shmem page offsets, seal and one content token per page; a ``?`` token
  on the model side (content the kernel leaves undefined, e.g. after
  ``MADV_FREE``) matches anything;
* the **exact VMA boundaries** where the kernel's rules fix them: after a refused
  ``munmap`` or ``mmap(MAP_FIXED)``, whether there is a VMA boundary at the
  start and at the end of the range (the leading unsealed VMA is left split
  at the start, the last one is never split: docs/reference/linux.md rule 5,
  scenarios probe/3.5, probe/3.6, probe/4.3). Boundaries inside the range depend on how the kernel
  merges VMAs and are compared only with ``exact=True`` (every boundary,
  after every call);
* the tracked **VmFlags** (``dc wf lo lf hg nh dd rr sr mg gd gu``) only at the
  steps where the kernel executor read smaps (:attr:`TraceRun.flags_checked`).

Everything else (object identities, anonymous page offsets, VMA boundaries
that depend on when the kernel merges) is not compared unless ``exact=True``.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..flags import PAGE_SIZE, MapFlag, Prot
from ..layout import TRACKED_FLAGS, Layout, Run
from ..ops import MODEL_BASES, Mmap, Munmap, Op, Step, format_result, format_step
from .target import TraceRun

__all__ = [
    "Canon",
    "Divergence",
    "annotate",
    "canonical",
    "compare_runs",
    "diff_layouts",
    "exact_check_range",
]

_EMPTY: Final = frozenset[str]()


# ------------------------------------------------------------ canonical forms

# A canonical run: [start, end, (prot, shared, backing, seal, flags), pgoff, content]
Canon = list[list[Any]]


def _is_filelike(backing: str) -> bool:
    return backing.startswith(("file:", "shmem"))


def canonical(runs: Iterable[Run], *, flags: bool, exact: bool = False) -> Canon:
    """Runs of a :class:`~sealkit.layout.Layout` in the form compared: object
    identity and anonymous offsets dropped, flags kept only when ``flags``,
    and adjacent runs merged unless ``exact`` (the same rule as
    :meth:`Layout.merged`)."""
    out: Canon = []
    for run in runs:
        start, end, prot, shared, backing = (
            run.start,
            run.end,
            int(run.prot),
            run.shared,
            run.backing,
        )
        pgoff, seal, fl, content = run.pgoff, run.seal, run.flags, run.content
        if not _is_filelike(backing):
            pgoff = None
        key = (prot, shared, backing, seal, (fl & TRACKED_FLAGS) if flags else _EMPTY)
        if out and not exact:
            last = out[-1]
            if last[1] == start and last[2] == key:
                lp = last[3]
                if (lp is None and pgoff is None) or (
                    lp is not None and pgoff is not None and pgoff == lp + (last[1] - last[0])
                ):
                    last[1] = end
                    last[4] = last[4] + content
                    continue
        out.append([start, end, key, pgoff, content])
    return out


def _content_match(model: str, kernel: str) -> bool:
    if model == kernel:
        return True
    if len(model) != len(kernel) or "?" not in model:
        return False
    return all(m in ("?", k) for m, k in zip(model, kernel, strict=True))


def _canon_equal(model: Canon, kernel: Canon) -> bool:
    if len(model) != len(kernel):
        return False
    for m, k in zip(model, kernel, strict=True):
        if m[0] != k[0] or m[1] != k[1] or m[2] != k[2] or m[3] != k[3]:
            return False
        if m[4] != k[4] and not _content_match(m[4], k[4]):
            return False
    return True


def _canon_layout(canon: Canon, zone: str, lo: int, hi: int) -> Layout:
    runs = []
    for start, end, (prot, shared, backing, seal, fl), pgoff, content in canon:
        runs.append(Run(start, end, Prot(prot), shared, backing, pgoff, None, seal, fl, content))
    return Layout(zone, lo, hi, tuple(runs))


def diff_layouts(model: Layout, kernel: Layout, *, flags: bool, exact: bool = False) -> str | None:
    """``None`` when the layouts agree in the compared form; otherwise the first
    differing line (``- model`` / ``+ kernel``)."""
    m = canonical(model.runs, flags=flags, exact=exact)
    k = canonical(kernel.runs, flags=flags, exact=exact)
    if _canon_equal(m, k):
        return None
    ml = _canon_layout(m, model.zone, model.lo, model.hi).text().splitlines()
    kl = _canon_layout(k, kernel.zone, kernel.lo, kernel.hi).text().splitlines()
    for a, b in zip(ml, kl, strict=False):
        if a != b:
            return f"- {a}\n+ {b}"
    if len(ml) > len(kl):
        return f"- {ml[len(kl)]}\n+ (nothing)"
    return f"- (nothing)\n+ {kl[len(ml)]}"


# ------------------------------------------------------------ exact boundaries


def exact_check_range(op: Op, result: int) -> tuple[int, int] | None:
    """The arena page range at whose ends the kernel's rules fix the VMA boundaries
    after ``op`` returned ``result``, or ``None``: a refused munmap or
    mmap(MAP_FIXED) (docs/reference/linux.md rule 5, scenarios probe/3.5, probe/3.6,
    probe/4.3; the refused brk shrink is scenario probe/8.1)."""
    if result != -_errno.EPERM:
        return None
    if isinstance(op, Munmap) or (isinstance(op, Mmap) and op.flags & MapFlag.FIXED):
        zoned = MODEL_BASES.zone_of(op.addr)
        if zoned is None or zoned[0] != "p":
            return None
        lo = zoned[1] // PAGE_SIZE
        hi = -(-(zoned[1] + op.length) // PAGE_SIZE)
        return lo, hi
    return None


def _boundaries(runs: Iterable[Run], lo: int, hi: int) -> list[int]:
    marks: set[int] = set()
    for run in runs:
        for b in (run.start, run.end):
            if lo <= b <= hi:
                marks.add(b)
    return sorted(marks)


# ------------------------------------------------------------ divergences


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where model and kernel first disagree.

    ``step`` is the 0-based call index (``None`` when the kernel run died
    before any call); ``kind`` is ``"result"``, ``"layout"``, ``"boundaries"``,
    ``"flags"`` or ``"death"``; ``model`` and ``kernel`` say what each side had.
    """

    step: int | None
    kind: str
    zone: str
    model: str
    kernel: str

    def describe(self) -> str:
        """A few lines for people."""
        where = "before any call" if self.step is None else f"at step {self.step + 1}"
        return f"{self.kind} differs {where} (zone {self.zone}):\n  model:  {self.model}\n  kernel: {self.kernel}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "step": None if self.step is None else self.step + 1,
            "kind": self.kind,
            "zone": self.zone,
            "model": self.model,
            "kernel": self.kernel,
        }


def compare_runs(
    model: TraceRun,
    kernel: TraceRun,
    *,
    exact: bool = False,
    canon_cache: list[dict[str, Canon]] | None = None,
) -> Divergence | None:
    """The first divergence between two runs of the same trace, the model's
    and the reference's (any two targets: see :mod:`sealkit.fidelity.target`),
    or ``None``. Layouts are compared at the steps both runs observed; flags
    where both read them. ``canon_cache`` may hold the model's canonical
    layouts per step (without flags, merged), computed while the model ran."""
    ops = model.ops
    # The last (model canonical, kernel layout) pair found equal, per zone: a
    # step where neither side changed (the very same objects) needs no second
    # comparison.
    agreed: dict[str, tuple[Canon, Layout]] = {}
    for i, op in enumerate(ops):
        if i >= len(kernel.results):
            how = kernel.died or "the kernel run stopped"
            return Divergence(i, "death", "p", "(ran)", how)
        mres, kres = model.results[i], kernel.results[i]
        if mres != kres:
            return Divergence(i, "result", "p", format_result(op, mres), format_result(op, kres))
        klays = kernel.layouts[i]
        mlays = model.layouts[i] if i < len(model.layouts) else None
        if klays is None or mlays is None:
            continue
        flagged = kernel.flags_checked[i] and model.flags_checked[i]
        for zone in kernel.zones:
            klay = klays[zone]
            mlay = mlays[zone]
            same = False
            if canon_cache is not None and not flagged and not exact:
                mc = canon_cache[i][zone]
                last = agreed.get(zone)
                # Both sides as at the last agreeing step (the model's canonical
                # form is the very object when its state did not change; the
                # kernel's layout is when its snapshot did not).
                same = last is not None and last[0] is mc and last[1] is klay
            else:
                mc = canonical(mlay.runs, flags=flagged, exact=exact)
            if same:
                pass
            elif _canon_equal(mc, canonical(klay.runs, flags=flagged, exact=exact)):
                agreed[zone] = (mc, klay)
            else:
                line = diff_layouts(mlay, klay, flags=flagged, exact=exact) or "?"
                kind = (
                    "flags"
                    if flagged and diff_layouts(mlay, klay, flags=False) is None
                    else "layout"
                )
                m_line, _, k_line = line.partition("\n")
                return Divergence(i, kind, zone, m_line[2:], k_line[2:])
            span = exact_check_range(op, kres) if zone == "p" and not exact else None
            if span is not None:
                # The kernel's rules fix the split at the ends of the refused range
                # (rule 5: the leading VMA split at the start, the last never
                # split); boundaries inside it depend on merging (--exact).
                ends = [b for b in span if 0 <= b <= mlay.hi]
                mb = [b for b in ends if b in _boundaries(mlay.runs, b, b)]
                kb = [b for b in ends if b in _boundaries(klay.runs, b, b)]
                if mb != kb:
                    return Divergence(
                        i, "boundaries", zone, f"VMA boundaries at {ends}: {mb}",
                        f"VMA boundaries at {ends}: {kb}",
                    )  # fmt: skip
    if kernel.died is not None:
        return Divergence(kernel.died_step, "death", "p", "(ran)", kernel.died)
    return None


def annotate(
    ops: Sequence[Op], kernel: TraceRun, model: TraceRun | None, divergence: Divergence | None
) -> str:
    """The trace in the text form with the kernel's results, the model's result
    noted where it differs and the first divergence marked: ready for
    ``sealkit replay``."""
    lines = []
    for i, op in enumerate(ops):
        res = kernel.results[i] if i < len(kernel.results) else None
        note = ""
        if (
            model is not None
            and i < len(model.results)
            and res is not None
            and model.results[i] != res
        ):
            note = f"model: {format_result(op, model.results[i])}"
        if divergence is not None and divergence.step == i:
            note = (note + "; " if note else "") + f"<- first divergence ({divergence.kind})"
        lines.append(format_step(Step(op, res, note)))
    return "\n".join(lines) + "\n"
