"""Indexed images by id: the original file, a cached thumbnail, metadata as JSON, and tags."""
from __future__ import annotations

import os
from email.utils import formatdate
from typing import Annotated, BinaryIO
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from ... import config
from ...errors import ImageError
from ...ingest.paths import is_remote
from ...ingest.remote import open_url
from ...library import ocr_json
from ...paths import shown
from ...store.base import normalize_tag
from .. import thumbs
from ..errors import ApiError
from ..schemas import ImageOut, TagsIn, TagsOut
from ..security import write_access
from .common import checked_file, errors, image_row, image_urls, library_of

router = APIRouter(prefix="/api/images", tags=["images"])
ImageId = Annotated[int, PathParam(ge=1, le=2**62, description="an indexed image's id")]
TagName = Annotated[str, PathParam(min_length=1, max_length=64, description="a tag")]
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
               "TIFF": "image/tiff", "BMP": "image/bmp", "HEIF": "image/heif", "AVIF": "image/avif"}
IMAGE_RESPONSE = {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))}
                  | {"application/json": {"schema": {"$ref": "#/components/schemas/ImageOut"}}},
                  "description": "the original file (or its metadata with Accept: application/json)"}
CHUNK = 1 << 20


def _metadata(request: Request, image_id: int) -> dict:
    row = image_row(request, image_id)
    store = library_of(request).store
    out = {k: v for k, v in row.items() if k not in ("mtime_ns", "content_hash")}
    out["path"] = shown(row["path"])  # a name with undecodable bytes or line breaks, as a person reads it
    out["name"] = shown(os.path.basename(row["path"]))
    out["fields"] = store.get_fields([image_id]).get(image_id, {})
    out["tags"] = store.get_tags([image_id]).get(image_id, [])
    out["ocr"] = ocr_json(store.get_texts([image_id]).get(image_id))
    out.update(image_urls(image_id))
    return out


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "image/" not in accept


def content_disposition(name: str) -> str:
    """`inline` with the file name in its shown form (paths.shown), so any name makes a valid header: raw bytes that
    are not UTF-8 cannot be declared as UTF-8, and control characters have no place in a header. A name that is not
    plain ASCII goes in RFC 5987's `filename*`."""
    name = shown(name) or "image"
    if name.isascii() and not any(c in name for c in '"\\%;'):
        return f'inline; filename="{name}"'
    return f"inline; filename*=utf-8''{quote(name, safe='')}"


@router.get("/{image_id}", responses={200: IMAGE_RESPONSE, **errors(404, 409)})
def original(request: Request, image_id: ImageId):
    """The original image file with its content type (metadata JSON instead with `Accept: application/json`)."""
    if _wants_json(request):
        return JSONResponse(ImageOut(**_metadata(request, image_id)).model_dump(mode="json"))
    row = image_row(request, image_id)
    media_type = MEDIA_TYPES.get(row.get("format") or "", "application/octet-stream")
    if is_remote(row["path"]):
        return _remote_original(row, media_type)
    return _send_open_file(checked_file(request, row), media_type, os.path.basename(row["path"]))


def _send_open_file(f: BinaryIO, media_type: str, name: str) -> StreamingResponse:
    """The file open_indexed checked and opened, streamed from that open file. Not FileResponse: it opens its path
    again when it sends, so a path swapped after the check would be what went out; this sends the very inode that
    was checked, and no more than the size it had then. Range requests are not answered (the page and downloads
    fetch an image whole)."""
    st = os.fstat(f.fileno())

    def chunks():
        with f:
            left = st.st_size
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk

    headers = {"Content-Length": str(st.st_size), "Last-Modified": formatdate(st.st_mtime, usegmt=True),
               "ETag": f'"{st.st_mtime_ns:x}-{st.st_size:x}"', "Content-Disposition": content_disposition(name)}
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


def _remote_original(row: dict, media_type: str) -> StreamingResponse:
    """An image indexed from object storage (s3://, https://, ...): streamed through this server, which holds the
    credentials; the client never sees the storage URL."""
    try:
        f = open_url(row["path"])
    except OSError as exc:
        raise ApiError(404, "unreadable", f"image {row['id']} can no longer be read: {exc.strerror}") from None

    def chunks():
        with f:
            while chunk := f.read(CHUNK):
                yield chunk

    name = unquote(row["path"].rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0])
    return StreamingResponse(chunks(), media_type=media_type,
                             headers={"Content-Disposition": content_disposition(name)})


@router.get("/{image_id}/metadata", response_model=ImageOut, responses=errors(404))
def metadata(request: Request, image_id: ImageId) -> dict:
    """Everything known about an indexed image: file facts, EXIF, imported fields, tags."""
    return _metadata(request, image_id)


@router.get("/{image_id}/thumbnail", responses={200: {"content": {thumbs.MEDIA_TYPE: {}},
                                                       "description": "a small cached thumbnail"},
                                                 **errors(404, 409)})
def thumbnail(request: Request, image_id: ImageId,
              size: Annotated[int, Query(ge=16, le=640, description="longest side in pixels; rounded up to "
                                                                     "160, 320 or 640")] = 320) -> FileResponse:
    """A thumbnail (WebP, or JPEG where Pillow lacks WebP), made once and cached in the library folder."""
    row = image_row(request, image_id)
    library = library_of(request)
    source = checked_file(request, row)  # checked even when cached: a file that is gone or swapped is not shown
    try:
        path = thumbs.thumbnail(library.path, row, thumbs.snap(size), config.get("max_image_pixels"), source)
    except thumbs.ContentChanged:
        raise ApiError(409, "file_changed", f"image {image_id} changed since it was indexed: index again") from None
    except ImageError as exc:
        raise ApiError(404, "unreadable", f"image {image_id} can no longer be read: {exc}") from None
    finally:
        if source is not None:
            source.close()
    return FileResponse(path, media_type=thumbs.MEDIA_TYPE, headers={"Cache-Control": "private, max-age=3600"})


def _clean_tags(tags: list[str]) -> list[str]:
    out = []
    for tag in tags:
        t = normalize_tag(tag)
        if not t or len(t) > 64 or not t.isprintable() or '"' in t:
            raise ApiError(422, "bad_tag", f"tag {tag!r} must be 1 to 64 printable characters without double quotes")
        out.append(t)
    return out


def _tags_of(request: Request, image_id: int) -> dict:
    return {"id": image_id, "tags": library_of(request).store.get_tags([image_id]).get(image_id, [])}


@router.post("/{image_id}/tags", response_model=TagsOut, responses=errors(401, 403, 404),
             dependencies=[Depends(write_access)])
def add_tags(request: Request, image_id: ImageId, body: TagsIn) -> dict:
    """Add tags to an image (source "user"). Needs the token when the server requires one."""
    image_row(request, image_id)
    library = library_of(request)
    tags = _clean_tags(body.tags)
    library.tag_add(image_id, tags)
    return _tags_of(request, image_id)


@router.delete("/{image_id}/tags/{tag}", response_model=TagsOut, responses=errors(401, 403, 404),
               dependencies=[Depends(write_access)])
def remove_tag(request: Request, image_id: ImageId, tag: TagName) -> dict:
    """Remove one tag from an image. Needs the token when the server requires one."""
    image_row(request, image_id)
    library = library_of(request)
    (t,) = _clean_tags([tag])
    library.tag_remove(image_id, [t])
    return _tags_of(request, image_id)
