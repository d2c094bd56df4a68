"""/docs (Swagger UI) and /redoc without internet: their scripts and styles come from the installed
`fastapi-offline` package (the `server` extra; Swagger UI 5, which reads OpenAPI 3.1, and ReDoc 2), served from
/docs-assets, under a Content-Security-Policy that allows only this server (and Swagger UI's one inline script, by
its hash)."""
from __future__ import annotations

import base64
import hashlib
import logging
import re
from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)
ASSETS = "/docs-assets"
# No validator badge: Swagger UI would fetch it from validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def assets_folder() -> Path | None:
    """The folder of Swagger UI's and ReDoc's files in the installed fastapi-offline package (not imported)."""
    spec = find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() and (folder / "redoc.standalone.js").is_file() \
        else None


def _csp(body: bytes) -> str:
    """The page's policy: everything from this server only; inline scripts allowed by their hash alone. Styles
    may be inline (ReDoc's styled-components and Swagger UI write <style> elements); blob: workers are ReDoc's
    search."""
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
                      for script in re.findall(rb"<script>(.*?)</script>", body, re.S))
    return ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; font-src 'self' data:; "
            f"script-src 'self' {hashes}; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _secured(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _csp(page.body)
    page.headers["Cache-Control"] = "no-cache"
    return page


def install(app: FastAPI) -> None:
    """Add /docs and /redoc (the app is made with docs_url=None, redoc_url=None). Without fastapi-offline (an
    install older than this extra) they fall back to FastAPI's pages, which load their files from a CDN."""
    folder = assets_folder()
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title
    if folder is None:
        log.warning("fastapi-offline is not installed: /docs and /redoc load Swagger UI and ReDoc from a CDN "
                    "(pip install 'picseek[server]' serves them locally)")
    else:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if folder is None:
            return get_swagger_ui_html(openapi_url=root + openapi_url, title=f"{title} - Swagger UI",
                                       swagger_ui_parameters=SWAGGER_PARAMETERS)
        return _secured(get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png", swagger_ui_parameters=SWAGGER_PARAMETERS))

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if folder is None:
            return get_redoc_html(openapi_url=root + openapi_url, title=f"{title} - ReDoc")
        return _secured(get_redoc_html(
            openapi_url=root + openapi_url, title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False))
