"""Walk folders and tell new, changed, unchanged, moved and missing files apart (a stat per file, no reads).

A re-scan of an unchanged folder costs a stat and a dict lookup per file; entries and the store's file states
are tuples, and the missing files are looked for only when the counts say some are (benchmarks/rescan.py)."""
from __future__ import annotations

import logging
import operator
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import UsageError
from ..store.base import FileState
from .images import IMAGE_EXTENSIONS, file_hash

log = logging.getLogger(__name__)
_NAME = operator.attrgetter("name")


class FileEntry(NamedTuple):
    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    todo: list[FileEntry] = field(default_factory=list)  # new or changed: to decode and embed
    changed: set[str] = field(default_factory=set)  # paths in todo that replace an indexed version
    unchanged: int = 0
    known_errors: int = 0  # unchanged files that failed before (skipped unless retried)
    moved: list[tuple[int, str, int, int]] = field(default_factory=list)  # (id, new path, size, mtime_ns)
    missing: list[str] = field(default_factory=list)  # indexed paths that are gone


def normalize_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    """Absolute folder/file paths, or canonical URLs for roots in object storage (ingest/remote.py)."""
    from . import remote

    out = []
    for r in roots:
        if remote.is_remote(r):
            out.append(remote.normalize_root(r))
            continue
        p = Path(remote.file_url_path(r) if remote.is_url(r) else r).expanduser()
        if not p.exists():
            raise UsageError(f"folder not found: {r}")
        out.append(str(p.resolve()))
    if not out:
        raise UsageError("no folder given to index")
    return out


def walk(roots: Iterable[str], skip: Iterable[str] = ()) -> Iterator[FileEntry]:
    """Image files below the roots: hidden entries, `._*` resource forks and the `skip` folders are left out;
    symlinked folders are followed once (loops are safe: each real folder is visited once)."""
    skip_real = {os.path.realpath(s) for s in skip}
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    for root in roots:
        if not root.startswith("/") and "://" in root:  # a URL root (normalize_roots keeps only remote ones)
            from .remote import list_entries

            for entry in list_entries(root):
                if entry.path not in seen_files:
                    seen_files.add(entry.path)
                    yield entry
            continue
        if os.path.isfile(root):
            entry = _entry(root)
            if entry and root not in seen_files:
                seen_files.add(root)
                yield entry
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
            except OSError as exc:
                log.warning("cannot read folder %s: %s", folder, exc)
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs or os.path.realpath(folder) in skip_real:
                continue
            seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=_NAME)
            except OSError as exc:
                log.warning("cannot read folder %s: %s", folder, exc)
                continue
            subdirs = []
            for e in entries:
                name = e.name
                if name[0] == ".":
                    continue
                try:
                    if e.is_dir():
                        subdirs.append(e.path)
                        continue
                    dot = name.rfind(".")
                    if dot < 0 or name[dot:].lower() not in IMAGE_EXTENSIONS or not e.is_file():
                        continue
                    path = e.path
                    if path in seen_files:
                        continue
                    seen_files.add(path)
                    st = e.stat()
                    yield FileEntry(path, st.st_size, st.st_mtime_ns)
                except OSError as exc:
                    log.warning("cannot stat %s: %s", e.path, exc)
            stack.extend(reversed(subdirs))


def _entry(path: str) -> FileEntry | None:
    if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
        return None
    st = os.stat(path)
    return FileEntry(path, st.st_size, st.st_mtime_ns)


def diff(entries: Iterable[FileEntry], indexed: Mapping[str, FileState],
         errors: Mapping[str, tuple[int, int]], retry_errors: bool = False) -> ScanResult:
    """Compare what is on disk with what the store holds. Moves are found by size then content hash, so only
    new files that share a size with a missing file are ever read here."""
    result = ScanResult()
    entries = entries if isinstance(entries, (list, tuple)) else list(entries)
    new: list[FileEntry] = []
    get = indexed.get
    for e in entries:
        state = get(e.path)
        if state is None:
            if not retry_errors and errors.get(e.path) == (e.size, e.mtime_ns):
                result.known_errors += 1
            else:
                new.append(e)
        elif state.size == e.size and state.mtime_ns == e.mtime_ns:
            result.unchanged += 1
        else:
            result.todo.append(e)
            result.changed.add(e.path)
    missing: dict[str, FileState] = {}
    if result.unchanged + len(result.changed) != len(indexed):  # some indexed file was not seen (a re-scan: none)
        seen = {e.path for e in entries}
        missing = {p: indexed[p] for p in sorted(indexed.keys() - seen)}
    by_size: dict[int, list[FileState]] = {}
    for s in missing.values():
        by_size.setdefault(s.size, []).append(s)
    for e in new:
        candidates = by_size.get(e.size)
        if candidates:
            try:
                h = file_hash(e.path)
            except OSError:
                h = None
            match = next((s for s in candidates if s.content_hash == h), None)
            if match is not None:
                candidates.remove(match)
                del missing[match.path]
                result.moved.append((match.id, e.path, e.size, e.mtime_ns))
                continue
        result.todo.append(e)
    result.missing = sorted(missing)
    return result
