"""Walk folders and tell new, changed, unchanged, moved and missing files apart (a stat per file, no reads).

A re-scan of an unchanged folder costs a stat and a dict lookup per file; entries and the store's file states
are tuples, and the missing files are looked for only when the counts say some are (benchmarks/rescan.py)."""
from __future__ import annotations

import errno
import logging
import operator
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import UsageError
from ..paths import within
from ..store.base import FileState
from .contenthash import kind_of
from .images import file_hashes
from .paths import IMAGE_EXTENSIONS, FileEntry, file_url_path, has_image_extension, is_remote, is_url

__all__ = ["FileEntry", "ScanResult", "WalkProblem", "normalize_roots", "walk", "diff"]

log = logging.getLogger(__name__)
_NAME = operator.attrgetter("name")


@dataclass
class ScanResult:
    todo: list[FileEntry] = field(default_factory=list)  # new or changed: to decode and embed
    changed: set[str] = field(default_factory=set)  # paths in todo that replace an indexed version
    unchanged: int = 0
    known_errors: int = 0  # unchanged files that failed before (skipped unless retried)
    moved: list[tuple[int, str, int, int]] = field(default_factory=list)  # (id, new path, size, mtime_ns)
    missing: list[str] = field(default_factory=list)  # indexed paths that are gone
    stale_errors: list[str] = field(default_factory=list)  # error rows of files that are gone (or now fine)


def normalize_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    """Absolute folder/file paths, or canonical URLs for roots in object storage (ingest/remote.py)."""
    out = []
    for r in roots:
        if is_remote(r):
            from .remote import normalize_root  # fsspec and its backends are imported only for URL roots

            out.append(normalize_root(r))
            continue
        p = Path(file_url_path(r) if is_url(r) else r).expanduser()
        if not p.exists():
            raise UsageError(f"folder not found: {r}")
        out.append(str(p.resolve()))
    if not out:
        raise UsageError("no folder given to index")
    return out


class WalkProblem(NamedTuple):
    """An entry below a root that cannot be indexed for a reason of the file system, not of the image: a folder
    that cannot be read, a dangling symbolic link, a link loop, a link that leads outside the indexed folders.
    Recorded like a file that failed (status --errors); `folder` entries also keep the images indexed below them
    (a folder that cannot be read now is not a folder whose images are gone)."""

    path: str
    size: int
    mtime_ns: int
    reason: str
    folder: bool = False


def walk(roots: Iterable[str], skip: Iterable[str] = (), problems: list[WalkProblem] | None = None,
         follow_links: bool | None = None, scope: Iterable[str] | None = None) -> Iterator[FileEntry]:
    """Image files below the roots: hidden entries, `._*` resource forks and the `skip` folders are left out;
    symbolic links are followed where they stay inside the roots (or inside `scope`, the folders these roots are
    part of, e.g. a watcher's; anywhere with `follow_links`, default: the setting), each real folder visited once.
    What cannot be walked is appended to `problems` (when given)."""
    if follow_links is None:
        from .. import config

        follow_links = config.get("follow_links")
    problems = problems if problems is not None else []
    skip_real = {os.path.realpath(s) for s in skip}
    roots = list(roots)
    real_roots = [os.path.realpath(r) for r in (roots if scope is None else scope) if not is_url(r)]
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def problem(path: str, reason: str, folder: bool = False) -> None:
        try:
            st = os.lstat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        log.info("cannot index %s: %s", path, reason)  # (the run's summary lists it, like a file that failed)
        problems.append(WalkProblem(path, size, mtime, reason, folder))

    def link_problem(path: str, parent: str, is_image: bool) -> str | None:
        """Why a symbolic link is not followed (None: follow it)."""
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop (the link leads back to itself)"
            if exc.errno == errno.ENOENT:
                return "broken symbolic link (its target does not exist)"
            return f"cannot follow symbolic link: {exc.strerror}"
        real = os.path.realpath(path)
        if not follow_links and not within(real, real_roots):
            return "symbolic link to a place outside the indexed folders (set follow_links = true to index it)"
        if os.path.isdir(real) and within(os.path.realpath(parent), [real]):
            return "symbolic link loop (the link leads to a folder that contains it)"
        return None

    for root in roots:
        if is_url(root):  # a URL root (normalize_roots keeps only remote ones)
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
                problem(folder, f"cannot read folder: {exc.strerror}", folder=True)
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs or os.path.realpath(folder) in skip_real:
                continue
            seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=_NAME)
            except OSError as exc:
                problem(folder, f"cannot read folder: {exc.strerror}", folder=True)
                continue
            subdirs = []
            for e in entries:
                name = e.name
                if name[0] == ".":
                    continue
                try:
                    dot = name.rfind(".")
                    is_image = dot >= 0 and name[dot:].lower() in IMAGE_EXTENSIONS
                    if e.is_symlink():
                        why = link_problem(e.path, folder, is_image)
                        if why is not None:
                            problem(e.path, why, folder=not is_image)  # (maybe a folder: keep what is below it)
                            continue
                    if e.is_dir():
                        subdirs.append(e.path)
                        continue
                    if not is_image or not e.is_file():
                        continue
                    path = e.path
                    if path in seen_files:
                        continue
                    seen_files.add(path)
                    st = e.stat()
                    yield FileEntry(path, st.st_size, st.st_mtime_ns)
                except OSError as exc:
                    problem(e.path, f"cannot read: {exc.strerror}")
            stack.extend(reversed(subdirs))


def _entry(path: str) -> FileEntry | None:
    if not has_image_extension(path):
        return None
    st = os.stat(path)
    return FileEntry(path, st.st_size, st.st_mtime_ns)


def diff(entries: Iterable[FileEntry], indexed: Mapping[str, FileState],
         errors: Mapping[str, tuple[int, int]], retry_errors: bool = False,
         problems: Iterable[WalkProblem] = ()) -> ScanResult:
    """Compare what is on disk with what the store holds. Moves are found by size then content hash, so only
    new files that share a size with a missing file are ever read here; such a file is hashed (in one read) in
    each kind its candidates hold, so rows of a library made with the older hash still match (ingest/contenthash.py).
    Nothing below a folder that could not be walked (`problems`) counts as missing."""
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
    problems = list(problems)
    unwalked = [p.path for p in problems if p.folder]
    missing: dict[str, FileState] = {}
    seen: set[str] | None = None
    if result.unchanged + len(result.changed) != len(indexed):  # some indexed file was not seen (a re-scan: none)
        seen = {e.path for e in entries}
        missing = {p: indexed[p] for p in sorted(indexed.keys() - seen) if not (unwalked and within(p, unwalked))}
    if len(errors) > result.known_errors:  # some error row may belong to a file that is gone or now indexed
        seen = seen if seen is not None else {e.path for e in entries}
        reported = {p.path for p in problems}
        result.stale_errors = sorted(p for p in errors.keys() - seen - reported
                                     if not (unwalked and within(p, unwalked)))
    by_size: dict[int, list[FileState]] = {}
    for s in missing.values():
        by_size.setdefault(s.size, []).append(s)
    for e in new:
        candidates = by_size.get(e.size)
        if candidates:
            try:
                hashes = file_hashes(e.path, {kind_of(s.content_hash) for s in candidates})
            except OSError:
                hashes = {}
            match = next((s for s in candidates
                          if s.content_hash and s.content_hash == hashes.get(kind_of(s.content_hash))), None)
            if match is not None:
                candidates.remove(match)
                del missing[match.path]
                result.moved.append((match.id, e.path, e.size, e.mtime_ns))
                continue
        result.todo.append(e)
    result.missing = sorted(missing)
    return result
