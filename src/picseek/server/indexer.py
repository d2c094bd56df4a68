"""Index runs in a background thread, one at a time, with their progress kept for /api/status and the page.

Searches keep working while a run writes: the store gives every thread its own connection (SQLite WAL).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

from ..errors import PicseekError

log = logging.getLogger(__name__)


@dataclass
class IndexState:
    running: bool = False
    phase: str = "idle"  # idle, scan, embed, done, failed
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

    def __init__(self, library, folders: tuple[str, ...], workers: int | None = None):
        self.library = library
        self.folders = tuple(folders)
        self.workers = workers
        self._lock = threading.Lock()
        self._state = IndexState(folders=list(self.folders))
        self._thread: threading.Thread | None = None

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
            report = self.library.index(list(self.folders), workers=self.workers, progress=self._progress).as_dict()
        except PicseekError as exc:
            error = str(exc)
            log.warning("index run failed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not die silently
            error = f"index run failed: {type(exc).__name__}: {exc}"
            log.exception("index run failed")
        with self._lock:
            self._state.running = False
            self._state.phase = "failed" if error else "done"
            self._state.finished_at = time.time()
            self._state.report = report
            self._state.error = error
            if report:
                self._state.errors = report.get("errors", self._state.errors)
