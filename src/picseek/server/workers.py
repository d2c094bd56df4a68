"""Several web worker processes for one library (`picseek serve --workers N`): one indexer, many readers.

Every worker answers searches from the same library. SQLite (WAL) lets them read while an index run writes, and
each sees the vectors another process commits: the store's in-memory matrix re-reads the rows newer than the last
one it holds, and is rebuilt when rows were removed (its `vec_epoch` counter). Index runs happen in one worker at
a time (a lock file in the library); the run in progress, or the last one, is published to a small JSON file
there, so /api/status says the same whichever worker answers. The start-up run happens once per `picseek serve`,
in the worker that claims it first.

The workers are separate processes started afresh (uvicorn's spawn), so what they need travels in one environment
variable: `export_spec` writes it in the parent, `app_from_env` (the factory uvicorn calls) reads it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path

from .._fs import FileLock, write_atomic
from ..errors import IndexBusyError
from .app import create_app
from .indexer import BackgroundIndexer
from .settings import ServerSettings

log = logging.getLogger(__name__)
ENV = "PICSEEK_SERVE_SPEC"
FACTORY = f"{__name__}:app_from_env"
LOCK_NAME, STATE_NAME, WATCH_LOCK_NAME = "serve-indexer.lock", "serve-indexer.json", "serve-watch.lock"
WATCH_CLAIM_EVERY = 5.0  # seconds between a worker's tries to become the one that watches (serve --watch)
PUBLISH_EVERY = 0.3  # seconds between progress updates in the shared file


def export_spec(library: str | os.PathLike, model: str | None, settings: ServerSettings) -> str:
    """Put what the workers need into the environment they inherit; returns this serve's boot id."""
    boot_id = uuid.uuid4().hex
    os.environ[ENV] = json.dumps({"library": os.fspath(library), "model": model, "boot_id": boot_id,
                                  "settings": dataclasses.asdict(settings)})
    return boot_id


def app_from_env():
    """The app of one web worker, built from the spec `export_spec` left in the environment."""
    from ..library import Library

    spec = json.loads(os.environ[ENV])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["settings"].items()}
    settings = ServerSettings(**fields)
    library = Library(spec["library"], model=spec["model"], create=False)
    indexer = SharedIndexer(library, settings.folders, settings.index_workers, boot_id=spec["boot_id"],
                            ocr=settings.ocr)
    app = create_app(library, settings, indexer)
    app.add_middleware(WorkerHeader)
    return app


class WorkerHeader:
    """Says which worker answered (`X-Picseek-Worker: <process id>`): for logs, load balancing checks and tests."""

    def __init__(self, app):
        self.app = app
        self.header = (b"x-picseek-worker", str(os.getpid()).encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, sending)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedIndexer(BackgroundIndexer):
    """A BackgroundIndexer whose runs are exclusive across the processes of one `picseek serve`, with its state
    shared through `<library>/serve-indexer.json`."""

    def __init__(self, library, folders: tuple[str, ...], workers: int | None = None, boot_id: str = "",
                 ocr: bool | None = None):
        super().__init__(library, folders, workers, ocr)
        self.boot_id = boot_id
        self._lock_path = Path(library.path) / LOCK_NAME
        self._state_path = Path(library.path) / STATE_NAME
        self._claim = None
        self._published = 0.0
        self._publishing = threading.Lock()

    # -- starting a run: claim the lock file first -----------------------------------------------------------------
    def start(self) -> bool:
        return self._start(boot=False)

    def start_at_boot(self) -> bool:
        return self._start(boot=True)

    def _start(self, boot: bool) -> bool:
        claim = self._try_claim()
        if claim is None:
            return False  # a run is going on in another worker (or this one)
        if boot and self._read():
            self._release(claim)  # this serve's start-up run already happened in another worker
            return False
        self._claim = claim
        if not super().start():
            self._claim = None
            self._release(claim)
            return False
        self._publish(force=True)  # before answering: any worker asked next must see this run
        return True

    def _try_claim(self) -> FileLock | None:
        claim = FileLock(self._lock_path)
        return claim if claim.acquire(wait=False) else None

    @staticmethod
    def _release(claim: FileLock) -> None:
        claim.release()

    def run_now(self, roots: list[str], *, workers: int | None = None, scope=None):
        """A watcher's run, exclusive across the workers like the others."""
        claim = self._try_claim()
        if claim is None:
            raise IndexBusyError("another worker is indexing")
        self._claim = claim
        try:
            return super().run_now(roots, workers=workers, scope=scope)
        finally:
            self._publish(force=True)
            self._claim = None
            self._release(claim)

    def _watch(self, initial: bool) -> None:
        """Only one worker watches (`serve --watch`): the one holding `serve-watch.lock`; the others try again
        every few seconds, so another takes over when it exits."""
        claim = FileLock(Path(self.library.path) / WATCH_LOCK_NAME)
        while not claim.acquire(wait=False):
            if self._stop.wait(WATCH_CLAIM_EVERY):
                return
        try:
            super()._watch(initial)
        finally:
            claim.release()

    def _run(self) -> None:
        try:
            self._publish(force=True)
            super()._run()
        finally:
            self._publish(force=True)
            claim, self._claim = self._claim, None
            if claim is not None:
                self._release(claim)

    # -- sharing the state ------------------------------------------------------------------------------------------
    def _progress(self, p) -> None:
        super()._progress(p)
        self._publish()

    def _publish(self, force: bool = False) -> None:
        """Write this worker's state for the others; only while it holds the claim (so never over a later run)."""
        now = time.monotonic()
        if self._claim is None or (not force and now - self._published < PUBLISH_EVERY):
            return
        self._published = now
        with self._publishing:  # snapshots reach the file in the order they were taken
            data = {"boot_id": self.boot_id, "pid": os.getpid(), "state": super().state()}
            try:
                write_atomic(self._state_path, lambda f: f.write(json.dumps(data).encode()), fsync=False)
            except OSError as exc:
                log.warning("cannot share the index run's progress with the other workers: %s", exc)

    def _read(self) -> dict:
        """The shared state of this serve (empty before its first run)."""
        try:
            data = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("boot_id") == self.boot_id else {}

    def state(self) -> dict:
        local = super().state()
        if local["running"]:
            return local
        shared = self._read()
        if not shared:
            return local
        state = shared["state"]
        pid = shared.get("pid")
        if state.get("running") and not (isinstance(pid, int) and pid > 0 and _alive(pid)):
            state.update(running=False, phase="failed", error="the index run stopped: its worker process exited")
        return state

    @property
    def running(self) -> bool:
        return bool(self.state()["running"])
