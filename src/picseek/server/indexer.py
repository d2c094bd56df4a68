"""Index runs in a background thread, one at a time, with their progress kept for /api/status and the page; with
`serve --watch`, a watcher thread (ingest/watch.py) whose runs go through the same state.

Searches keep working while a run writes: the store gives every thread its own connection (SQLite WAL).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

from ..errors import IndexBusyError, PicseekError

log = logging.getLogger(__name__)
WATCH_RETRY = 30.0  # seconds before a watcher whose start failed tries again


@dataclass
class IndexState:
    running: bool = False
    phase: str = "idle"  # idle, scan, embed, fill, done, failed
    done: int = 0
    total: int = 0
    errors: int = 0
    folders: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    report: dict | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class BackgroundIndexer:
    """Starts `library.index(folders)` in a daemon thread; `state()` is a consistent snapshot."""

    def __init__(self, library, folders: tuple[str, ...], workers: int | None = None, ocr: bool | None = None):
        self.library = library
        self.folders = tuple(folders)
        self.workers = workers
        self.ocr = ocr  # read the words in images (None: as the library says; True turns it on for later runs)
        self._lock = threading.Lock()
        self._state = IndexState(folders=list(self.folders))
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    def state(self) -> dict:
        with self._lock:
            return self._state.as_dict()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state.running

    def start(self) -> bool:
        """Start a run of the configured folders; False when one is already running."""
        with self._lock:
            if self._state.running:
                return False
            self._state = IndexState(running=True, phase="scan", folders=list(self.folders),
                                     started_at=time.time())
            self._thread = threading.Thread(target=self._run, name="picseek-index", daemon=True)
            self._thread.start()
        return True

    def start_at_boot(self) -> bool:
        """The run a server starts with (the shared indexer of several web workers starts it only once)."""
        return self.start()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _progress(self, p) -> None:
        with self._lock:
            self._state.phase = p.phase if p.phase != "done" else self._state.phase
            self._state.done, self._state.total, self._state.errors = p.done, p.total, p.errors

    def _run(self) -> None:
        report, error = None, None
        try:
            report = self.library.index(list(self.folders), workers=self.workers, progress=self._progress,
                                        ocr=self.ocr).as_dict()
        except PicseekError as exc:
            error = str(exc)
            log.warning("index run failed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not die silently
            error = f"index run failed: {type(exc).__name__}: {exc}"
            log.exception("index run failed")
        self._finish(report, error)

    # -- the watcher: its runs happen in its own thread, shown in the same state -------------------------------------
    def run_now(self, roots: list[str], *, workers: int | None = None, scope=None):
        """One index run of `roots` in the calling thread (the watcher's), shown in the state like any other;
        IndexBusyError while a run is going on. Errors are recorded in the state and raised."""
        with self._lock:
            if self._state.running:
                raise IndexBusyError("an index run is going on")
            self._state = IndexState(running=True, phase="scan", folders=list(roots), started_at=time.time())
        report = None
        try:
            report = self.library.index(roots, workers=self.workers if workers is None else workers,
                                        progress=self._progress, scope=scope, ocr=self.ocr)
            return report
        except IndexBusyError:  # (another process holds the library: not a failure of this server)
            with self._lock:
                self._state = IndexState(folders=list(self.folders))
            raise
        except Exception as exc:
            self._finish(None, str(exc) if isinstance(exc, PicseekError) else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if report is not None:
                self._finish(report.as_dict(), None)

    def watch(self, initial: bool = True) -> None:
        """Start following the folders in a daemon thread (Library.watch through `run_now`); `stop_watching` ends it."""
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, args=(initial,), name="picseek-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self, timeout: float | None = 5) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout)

    def _watch(self, initial: bool) -> None:
        def on_event(event) -> None:
            if event.changed:
                r = event.report
                log.info("watch: %s added, %s updated, %s moved, %s removed below %s", r.added, r.updated, r.moved,
                         r.removed, ", ".join(event.roots))

        while not self._stop.is_set():
            try:
                self.library.watch(self.folders, initial=initial, run=self.run_now, stop=self._stop,
                                   on_event=on_event)
                return
            except PicseekError as exc:  # e.g. the first run failed, a folder is gone: try again a little later
                log.warning("watching %s: %s (trying again in %.0f s)", ", ".join(self.folders), exc, WATCH_RETRY)
            except Exception:  # noqa: BLE001 - a background thread must report, not die silently
                log.exception("the folder watcher stopped")
                return
            self._stop.wait(WATCH_RETRY)

    def _finish(self, report: dict | None, error: str | None) -> None:
        with self._lock:
            self._state.running = False
            self._state.phase = "failed" if error else "done"
            self._state.finished_at = time.time()
            self._state.report = report
            self._state.error = error
            if report:
                self._state.errors = report.get("errors", self._state.errors)
