"""Text for people: text from the system made safe to show, and sizes.

Command names, mapped file paths and file names are chosen by whoever
created them: any process can name itself ``"\\x1b]0;owned\\x07"`` or map a
file whose name holds a newline or bytes that are not UTF-8 (decoded here
with ``surrogateescape``). Shown raw, such a name rewrites a terminal,
splits a table row, breaks an XML document or an exposition file, or makes
an encoder raise. :func:`printable` escapes exactly those characters, so
every output but JSON (which escapes everything itself and keeps the exact
text) stays one line per record and valid for its format.

:func:`label` is the audit's one rule for such names (commands, paths,
users) in every output it writes (table, JSON, Prometheus, SVG): what
:func:`printable` does, and a backslash doubled, so that no two names ever
look alike (:func:`unlabel` gives the name back) and the text is valid
UTF-8 everywhere, JSON included (an undecodable byte never becomes a lone
surrogate).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["human_size", "label", "printable", "unlabel"]

# The patterns are kept as text and compiled on first use (re caches them):
# compiling them at import cost about 1 ms of every `sealkit audit` run.
#
# C0 and C1 controls and DEL; lone surrogates (undecodable bytes); line and
# paragraph separators; bidirectional overrides and isolates, which reorder
# what a terminal shows ("Trojan Source").
_UNSAFE: Final = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
_NAMED: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters, undecodable bytes and
    bidirectional controls replaced by backslash escapes (``\\n``,
    ``\\x1b``, ``\\xff``, ``\\u202e``); other text, and the characters
    in ``keep`` (which the caller's format escapes its own way), unchanged."""
    if re.search(_UNSAFE, text) is None:
        return text
    if not keep:
        return re.sub(_UNSAFE, _escape, text)
    return re.sub(_UNSAFE, lambda m: m.group() if m.group() in keep else _escape(m), text)


_LABEL_UNSAFE: Final = "[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"


def _label_escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8: the only \xNN above 0x7f
        return f"\\x{code - 0xDC00:02x}"
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}")


def label(text: str) -> str:
    """``text`` as the audit shows it everywhere: the characters
    :func:`printable` escapes, escaped (``\\n``, ``\\x1b``, ``\\u0085``,
    ``\\u202e``; ``\\xff`` only for a byte that is not UTF-8), and a
    backslash written ``\\\\``. Injective: two different names never give
    the same label, and :func:`unlabel` undoes it. Text without those
    characters is unchanged."""
    # most names: printable ASCII without a backslash, the ASCII part of
    # _LABEL_UNSAFE (checked in C, without the regular expression). Only
    # for an exact str: the pattern raises TypeError for what is not text,
    # and reads a subclass's characters, not what its methods say.
    if type(text) is str and text.isascii() and text.isprintable() and "\\" not in text:
        return text
    if re.search(_LABEL_UNSAFE, text) is None:
        return text
    return re.sub(_LABEL_UNSAFE, _label_escape, text)


_UNLABEL: Final = r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|[\\ntr])"
_UNNAMED: Final = {"\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\r": "\r"}


def _unlabel_one(match: re.Match[str]) -> str:
    code = match.group()
    if code in _UNNAMED:
        return _UNNAMED[code]
    value = int(code[2:], 16)
    if code[1] == "x" and value >= 0x80:
        return chr(0xDC00 + value)  # a byte that was not UTF-8 (surrogateescape)
    return chr(value)


def unlabel(text: str) -> str:
    """The name that :func:`label` turned into ``text`` (undecodable bytes
    come back as ``surrogateescape`` characters, as ``os.fsdecode`` gives
    them)."""
    return re.sub(_UNLABEL, _unlabel_one, text)


def human_size(size: int) -> str:
    """``4096`` -> ``"4.0 KiB"``: sizes for people (tables, pictures)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns
