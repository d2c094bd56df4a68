"""The library as a whole: status (with index progress), starting an index run, the models."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ..._version import __version__
from ...paths import shown, shown_all
from ..errors import ApiError
from ..schemas import ErrorsOut, IndexStartOut, ModelsOut, StatusOut
from ..security import token_needed, write_access
from .common import errors, library_of

router = APIRouter(prefix="/api", tags=["library"])


@router.get("/status", response_model=StatusOut)
def status(request: Request) -> dict:
    """The library (path, model, images, errors, last run) and the index run in progress, if any."""
    library = library_of(request)
    out = library.status()
    out["indexing"] = request.app.state.indexer.state()
    out["writes_need_token"] = token_needed(request)
    out["version"] = __version__
    return shown_all(out)  # (roots and error samples may hold any file name)


@router.post("/index", response_model=IndexStartOut, status_code=202, responses=errors(400, 401, 403, 409),
             dependencies=[Depends(write_access)])
def start_index(request: Request) -> dict:
    """Start an index run of the folders the server was started with (never a path from the request)."""
    indexer = request.app.state.indexer
    if not indexer.folders:
        raise ApiError(400, "no_folders", "the server was started without folders to index: "
                       "picseek serve FOLDER [FOLDER...]")
    if not indexer.start():
        raise ApiError(409, "indexing", "an index run is already in progress")
    return {"started": True, "indexing": shown_all(indexer.state())}


@router.get("/models", response_model=ModelsOut)
def models(request: Request) -> dict:
    """The models picseek knows (and which are available offline), and the one this library uses."""
    from ...models.registry import list_models

    return {"library_model": library_of(request).recorded_model, "models": list_models()}


MAX_ERROR_OFFSET = 100_000


@router.get("/errors", response_model=ErrorsOut)
def index_errors(request: Request,
                 limit: Annotated[int, Query(ge=1, le=500, description="rows per page")] = 100,
                 offset: Annotated[int, Query(ge=0, le=MAX_ERROR_OFFSET, description="rows to skip (the `next` of "
                                                                                      "the page before)")] = 0) -> dict:
    """The files that could not be indexed (path, reason, size, when), by path, a page at a time."""
    store = library_of(request).store
    total = store.error_count()
    rows = store.errors(offset + limit)[offset:] if offset < total else []
    nxt = offset + limit if offset + limit < total and offset + limit <= MAX_ERROR_OFFSET else None
    return {"total": total, "offset": offset, "next": nxt,
            "errors": [{**r, "path": shown(r["path"])} for r in rows[:limit]]}
