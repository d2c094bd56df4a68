"""What the routes share: the app's state, the error responses OpenAPI documents, hits as JSON."""
from __future__ import annotations

from fastapi import Request

from ..errors import ApiError
from ..schemas import ErrorOut

MAX_LIMIT = 500


def errors(*statuses: int) -> dict:
    """OpenAPI `responses` entries for the given error statuses (every error is an ErrorOut)."""
    return {s: {"model": ErrorOut} for s in (*statuses, 422)}


def library_of(request: Request):
    return request.app.state.library


def image_urls(image_id: int) -> dict:
    return {"image_url": f"/api/images/{image_id}", "thumbnail_url": f"/api/images/{image_id}/thumbnail"}


def hit_json(hit) -> dict:
    d = hit.as_dict()
    d.update(image_urls(hit.id))
    return d


def image_row(request: Request, image_id: int) -> dict:
    """The stored row of an indexed image, or a 404: the only way a request reaches a file."""
    row = library_of(request).store.get_images([image_id]).get(image_id)
    if row is None:
        raise ApiError(404, "not_found", f"no indexed image with id {image_id}")
    return row


def require_images(request: Request) -> None:
    """Searching an empty library is a clear 409 that says what to do (and whether indexing is running)."""
    library = library_of(request)
    if library.store.count() > 0:
        return
    indexer = request.app.state.indexer
    if indexer.running:
        raise ApiError(409, "indexing", "the library has no images yet: indexing is running, try again shortly")
    raise ApiError(409, "empty_library", "the library has no images yet: start the server with a folder "
                   "(picseek serve FOLDER) or index one (picseek index FOLDER)")
