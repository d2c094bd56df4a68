"""File names as the OS gives them: stored without loss, shown without harm, served only from inside the library.

Python hands out a name that is not valid UTF-8 with each undecodable byte as a lone surrogate (U+DC80..U+DCFF,
"surrogateescape"); such a string cannot be written as text to SQLite, JSON or a terminal. `to_text` makes any path
valid Unicode text, reversibly (`from_text`), and leaves every other path as it is, so existing libraries keep their
rows: a lone surrogate becomes MARK + one character, and MARK itself (U+10FFFD, a private-use code point) is doubled.
The mapping is character by character, so a folder's prefix stays a prefix (range queries on paths keep working).

`shown` is the one form a person sees (tables, logs, `--paths`, the web page): control characters, line breaks,
bidirectional overrides and undecodable bytes escaped (`\\n`, `\\x1b`, `\\xff`), everything else as it is.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable

MARK = "\U0010fffd"
_SURROGATE_BASE = 0xD800
_OFFSET = 0x100  # a lone surrogate U+D800+k is stored as MARK + chr(0x100 + k): never MARK, never a surrogate
_NEEDS_ESCAPE = re.compile("[\ud800-\udfff\U0010fffd]")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LAYOUT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    ch = m.group()
    return MARK + (MARK if ch == MARK else chr(_OFFSET + ord(ch) - _SURROGATE_BASE))


def to_text(path: str) -> str:
    """A path as valid Unicode text (what a store keeps); the same string for every path without lone surrogates
    or MARK."""
    if path.isascii():
        return path
    return _NEEDS_ESCAPE.sub(_escape, path)


def from_text(text: str) -> str:
    """The inverse of `to_text`: the path exactly as the OS spells it."""
    if MARK not in text:
        return text
    out, i, n = [], 0, len(text)
    while i < n:
        j = text.find(MARK, i)
        if j < 0 or j + 1 >= n:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1]
        out.append(MARK if nxt == MARK else chr(_SURROGATE_BASE + ord(nxt) - _OFFSET))
        i = j + 2
    return "".join(out)


def _show(m: re.Match) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of the file name: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str) -> str:
    """One printable line for a person: control characters, line breaks, bidirectional overrides and undecodable
    bytes escaped; a backslash stays as it is, so an ordinary path is printed unchanged."""
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub(_show, text)


def shown_all(value):
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string in its shown form: what an answer that
    carries paths (a run's roots, its error samples) sends as JSON text."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {k: shown_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown_all(v) for v in value]
    return value


def terminal_safe(text: str) -> str:
    """Text for a terminal stream: like `shown`, but line breaks, tabs and carriage returns (progress bars) kept.
    The CLI passes everything it writes through this, so no escape sequence from a file name, a file's metadata or
    an error message ever reaches the terminal."""
    if text.isascii() and text.isprintable():
        return text
    return _LAYOUT.sub(_show, text)


def raw_bytes(path: str) -> bytes:
    """The path's bytes as the OS has them (for `--null` output that `xargs -0` hands back to the OS)."""
    return os.fsencode(path)


def within(path: str, roots: Iterable[str]) -> bool:
    """Whether `path` (already resolved) is one of the folders `roots` (resolved) or lies below one."""
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def unmounted_mount_point(path: str | os.PathLike, fstab: str = "/etc/fstab",
                          mounts: str = "/proc/self/mounts") -> str | None:
    """The mount point of `path` that /etc/fstab names but that is not mounted now (a disk or network share that is
    not there: its empty folder must not become a new library), or None. Unreadable tables: None."""
    def targets(table: str) -> set[str]:
        try:
            with open(table, encoding="utf-8", errors="replace") as f:
                lines = [line.split() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except OSError:
            return set()
        return {os.path.normpath(_octal(cols[1])) for cols in lines if len(cols) >= 2 and cols[1].startswith("/")}

    wanted = targets(fstab) - {"/"}
    if not wanted:
        return None
    mounted = targets(mounts)
    here = os.path.abspath(os.path.expanduser(os.fspath(path)))
    while True:
        if here in wanted and here not in mounted:
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _octal(field: str) -> str:
    """fstab and /proc/mounts write a space as \\040 (and tab, newline, backslash likewise)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
