"""The HTTP edge: every error becomes a JSON body {error, code[, detail]} with a 4xx status for a bad request.

picseek errors are translated here once; anything unexpected is logged and answered with a JSON 500.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    FilterError,
    ImageError,
    LibraryError,
    LibraryIOError,
    ModelError,
    ModelMismatchError,
    PicseekError,
    UsageError,
)

log = logging.getLogger(__name__)

# The statuses the web framework itself raises (an unknown path, a wrong method, a body cut off, a body that is not
# valid multipart, a static file that cannot be read); any other status is answered as a generic bad request or
# internal error. docs/api.md lists every code (tests/unit/test_api_error_codes.py).
_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class ApiError(Exception):
    """An HTTP answer raised from route code: status, stable code, one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, detail: list | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": message, "code": code}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def picseek_status(exc: PicseekError) -> tuple[int, str]:
    if isinstance(exc, ImageError):
        return (413, "image_too_large") if "too large" in str(exc) else (422, "bad_image")
    if isinstance(exc, (ModelError, ModelMismatchError)):
        return 503, "model_unavailable"
    if isinstance(exc, LibraryIOError):
        return 503, "library_unavailable"  # the library's disk (full, read-only, gone): not the request's fault
    if isinstance(exc, LibraryError):
        return 409, "library"
    if isinstance(exc, FilterError):
        return 400, "bad_filter"
    if isinstance(exc, UsageError):
        return 400, "bad_query"
    return 400, "bad_request"


def _generic(status: int) -> str:
    return "bad_request" if status < 500 else "internal_error"


def _validation_detail(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    return jsonable_encoder(out)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(PicseekError)
    async def _picseek(request: Request, exc: PicseekError):
        status, code = picseek_status(exc)
        return error_response(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        detail = _validation_detail(exc)
        first = detail[0] if detail else {}
        where = ".".join(p for p in first.get("loc", []) if p not in ("query", "body", "path", "header"))
        msg = f"invalid {where or 'request'}: {first.get('msg', 'malformed')}"
        return error_response(422, "invalid_parameters", msg, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(exc.status_code, _CODES.get(exc.status_code) or _generic(exc.status_code), message,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error (logged on the server)")
