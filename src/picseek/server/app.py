"""create_app(library, settings) -> the FastAPI app: the REST API under /api, OpenAPI at /docs, the web page at /.

    from picseek import Library
    from picseek.server import ServerSettings, create_app
    app = create_app(Library("~/picseek-library"), ServerSettings(folders=("/photos",)))
"""
from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from .._version import __version__
from . import docs, errors
from .indexer import BackgroundIndexer
from .query import ensure_model
from .routes import actions, images, library, search
from .security import GuardMiddleware
from .settings import ServerSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _warm_model(lib) -> None:
    try:
        ensure_model(lib)
    except Exception as exc:  # noqa: BLE001 - searches report it properly; here it is only a head start
        log.warning("model not loaded at start: %s", exc)


def create_app(lib, settings: ServerSettings | None = None, indexer: BackgroundIndexer | None = None) -> FastAPI:
    """The app for one open Library. Starts an index run of `settings.folders` at start-up when asked.
    `indexer`: the one several web worker processes share (server/workers.py); default: this process's own."""
    settings = settings or ServerSettings()
    settings.check()
    indexer = indexer or BackgroundIndexer(lib, settings.folders, settings.index_workers, settings.ocr)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.watch and settings.folders:
            indexer.watch(initial=settings.index_on_start)  # (its first run is the start-up run)
        elif settings.index_on_start and settings.folders:
            indexer.start_at_boot()
        if lib.recorded_model:
            threading.Thread(target=_warm_model, args=(lib,), name="picseek-warm", daemon=True).start()
        yield
        indexer.stop_watching(timeout=2)
        indexer.join(timeout=0)

    app = FastAPI(title="picseek", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Find images by what they show: search an image library by words, example images, "
                              "tags and filters. See docs/api.md.")
    app.state.library, app.state.settings, app.state.indexer = lib, settings, indexer
    errors.install(app)
    for module in (search, images, library, actions):
        app.include_router(module.router)
    _page(app)
    docs.install(app)  # /docs and /redoc with their files served here (no CDN)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(GuardMiddleware, settings=settings)
    return app


def _page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})
