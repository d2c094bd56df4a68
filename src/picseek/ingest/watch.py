"""A live library: folders followed as they change (`picseek watch`, `picseek serve --watch`, `Library.watch`).

File system events come from watchfiles (the Rust `notify` crate: inotify on Linux, FSEvents on macOS,
ReadDirectoryChanges on Windows). They are collected until `debounce` seconds pass without a new one (a burst of
copies is one batch, cut at `max_wait`), reduced to the folders they touched, and each batch is one ordinary
incremental index run of those folders (`run`: `Library.index`), which finds what was added, changed, moved or
deleted there. Every `rescan` seconds the whole of every watched folder is indexed again: events get lost (network
mounts, a full kernel queue, changes made while nothing watched), and that run finds what they missed.

Only image files (ingest/paths.has_image_extension) and folders count; hidden entries (`.name`, which covers
`._*` and the `.name.tmp` of an atomic write) and the `skip` folders (the library itself) are ignored. A run that
finds the library busy (another index run holds its lock: IndexBusyError) is tried again `retry` seconds later,
with the events that came meanwhile; any other error of a batch is logged and the watcher goes on (the next
re-scan catches up). The first run's errors are raised: a watcher that cannot index at all says so at once.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import IndexBusyError, PicseekError, UsageError
from ..paths import within
from .paths import has_image_extension, is_remote

log = logging.getLogger(__name__)

STEP_MS = 50  # how often the event thread is asked for news (a wake-up costs microseconds)
SMALL_BATCH = 16  # a batch of at most this many changed images is decoded in the indexing process (no pool start)
DELETED = 3  # watchfiles.Change.deleted


class StopEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class WatchEvent:
    """One index run of a watcher: `kind` is "initial", "events" (a batch of changes) or "rescan"; `report` the
    run's IndexReport (None when it failed: `error`)."""

    kind: str
    roots: list[str]
    report: object | None = None
    error: str | None = None
    paths: int = 0  # changed paths behind an "events" run

    @property
    def changed(self) -> bool:
        r = self.report
        return r is not None and bool(r.added or r.updated or r.moved or r.removed or r.errors)


@dataclass
class _Pending:
    roots: set[str] = field(default_factory=set)
    images: int = 0
    paths: int = 0
    full: bool = False

    def clear(self) -> None:
        self.roots.clear()
        self.images = self.paths = 0
        self.full = False


def is_hidden(path: str, root: str) -> bool:
    """Whether any part of `path` below `root` is hidden (`.name`: dot files, `._*` forks, `.x.jpg.tmp` temp files)."""
    rel = os.path.relpath(path, root)
    return any(part.startswith(".") and part not in (".", "..") for part in rel.split(os.sep))


def relevant(change: int, path: str, roots: Sequence[str], skip: Sequence[str]) -> bool:
    """Whether an event can change the library: an image file, or a folder (created, renamed; a deleted path may
    have been one) below a watched root, not hidden, not in a skipped folder."""
    root = next((r for r in roots if within(path, [r])), None)
    if root is None or within(path, skip) or is_hidden(path, root):
        return False
    if has_image_extension(path):
        return True
    return change == DELETED or os.path.isdir(path)


def folder_of(path: str, roots: Sequence[str]) -> str | None:
    """The folder to index again for a changed path: the existing folder that holds it (a deleted folder's nearest
    existing parent), never above its watched root; None when the root itself is gone."""
    root = next((r for r in roots if within(path, [r])), None)
    if root is None:
        return None
    folder = path if path == root else os.path.dirname(path)
    while not os.path.isdir(folder):
        if folder == root or not within(folder, [root]):
            return None
        folder = os.path.dirname(folder)
    return folder


def outermost(folders: Iterable[str]) -> list[str]:
    """The folders without those below another one of them."""
    out: list[str] = []
    for f in sorted(set(folders), key=len):
        if not within(f, out):
            out.append(f)
    return sorted(out)


def watch_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    """The folders to watch, resolved (events arrive under these spellings); URLs and missing folders refused."""
    out = []
    for r in roots:
        text = os.fspath(r)
        if is_remote(text):
            raise UsageError(f"cannot watch {text}: only local folders send file events (index it with picseek index)")
        path = os.path.realpath(os.path.expanduser(text))
        if not os.path.isdir(path):
            raise UsageError(f"folder not found: {text}")
        out.append(path)
    if not out:
        raise UsageError("no folder given to watch")
    return outermost(out)


class Watcher:
    """Follows `roots` and keeps the library in step through `run(roots, workers=..., scope=...)` (Library.index or
    a server's indexer). `on_event(WatchEvent)` hears about every run; `stop` (a threading.Event) ends `run_forever`."""

    def __init__(self, roots: Iterable[str | os.PathLike], run: Callable, *, skip: Iterable[str] = (),
                 debounce: float = 1.0, rescan: float = 600.0, initial: bool = True, workers: int | None = None,
                 on_event: Callable[[WatchEvent], None] | None = None, stop: StopEvent | None = None,
                 retry: float = 2.0, max_wait: float | None = None, after_initial: Callable[[], None] | None = None,
                 force_polling: bool | None = None):
        self.roots = watch_roots(roots)
        self.run = run
        self.skip = [os.path.realpath(s) for s in skip]
        self.debounce = max(0.0, float(debounce))
        self.rescan = max(0.0, float(rescan))
        self.initial = initial
        self.workers = workers
        self.on_event = on_event or (lambda e: None)
        self.stop = stop
        self.retry = retry
        self.max_wait = max_wait if max_wait is not None else max(10.0, 10 * self.debounce)
        self.after_initial = after_initial
        self.force_polling = force_polling

    def _notify(self):
        from watchfiles._rust_notify import RustNotify

        polling = self.force_polling if self.force_polling is not None else \
            os.environ.get("WATCHFILES_FORCE_POLLING", "").lower() in ("1", "true", "yes")
        return RustNotify(self.roots, False, polling, 300, True, True)

    def _wait(self, notify, timeout: float) -> set[tuple[int, str]] | str:
        """Changes (after `debounce` s of quiet, or `max_wait` s of a steady stream), or 'timeout' / 'stop'."""
        timeout_ms = 0 if timeout == float("inf") else max(1, int(timeout * 1000))
        raw = notify.watch(int(self.max_wait * 1000), STEP_MS, timeout_ms, self.stop)
        if raw == "signal":
            raise KeyboardInterrupt
        if isinstance(raw, str):
            return raw
        changes, first = set(raw), time.monotonic()
        while self.debounce and (left := self.max_wait - (time.monotonic() - first)) > 0:
            more = notify.watch(int(left * 1000), STEP_MS, max(1, int(min(self.debounce, left) * 1000)), self.stop)
            if more == "signal":
                raise KeyboardInterrupt
            if more == "stop":
                return "stop"
            if more == "timeout":
                break
            changes |= more
        return changes

    def _add(self, pending: _Pending, changes: set[tuple[int, str]]) -> None:
        for change, path in changes:
            if not relevant(change, path, self.roots, self.skip):
                continue
            folder = folder_of(path, self.roots)
            if folder is None:
                log.warning("a watched folder is gone: %s", path)
                continue
            pending.roots.add(folder)
            pending.paths += 1
            pending.images += has_image_extension(path)

    def _index(self, kind: str, roots: list[str], workers: int | None, paths: int = 0) -> bool:
        """One run; False when the library was busy (try again later)."""
        try:
            report = self.run(roots, workers=workers, scope=self.roots)
        except IndexBusyError:
            log.info("the library is busy with another index run; trying again in %.0f s", self.retry)
            return False
        except PicseekError as exc:
            if kind == "initial":
                raise
            log.warning("index run of %s failed: %s", ", ".join(roots), exc)
            self.on_event(WatchEvent(kind, roots, None, str(exc), paths))
            return True
        self.on_event(WatchEvent(kind, roots, report, None, paths))
        return True

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def run_forever(self) -> None:
        """Watch until `stop` is set (returns) or Ctrl-C (KeyboardInterrupt)."""
        with self._notify() as notify:  # (watching from here on: nothing that changes during the first run is lost)
            pending = _Pending(full=self.initial)
            kind = "initial" if self.initial else "rescan"
            next_rescan = time.monotonic() + self.rescan if self.rescan else float("inf")
            next_try = 0.0
            while not self._stopped():
                now = time.monotonic()
                if (pending.full or pending.roots) and now >= next_try:
                    if pending.full:
                        done = self._index(kind, list(self.roots), self.workers)
                    else:
                        roots = outermost(pending.roots)
                        small = pending.images <= SMALL_BATCH
                        done = self._index("events", roots, 0 if small else self.workers, pending.paths)
                    if not done:
                        next_try = time.monotonic() + self.retry
                        continue
                    if pending.full:
                        next_rescan = time.monotonic() + self.rescan if self.rescan else float("inf")
                        if kind == "initial" and self.after_initial is not None:
                            self.after_initial()
                        kind = "rescan"
                    pending.clear()
                    continue
                wake = next_rescan if not (pending.full or pending.roots) else min(next_rescan, next_try)
                got = self._wait(notify, max(0.001, wake - time.monotonic()))
                if got == "stop":
                    return
                if got == "timeout":
                    if time.monotonic() >= next_rescan:
                        pending.full = True
                    continue
                self._add(pending, got)
