"""GET/POST /api/search, GET /api/images/{id}/similar and GET /api/browse: thin wrappers over Library.search and
Library.browse."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam

from ...errors import UsageError
from ...request import SearchRequest
from ...store.base import parse_cursor
from .. import query as q
from ..errors import ApiError
from ..schemas import BrowseOut, SearchOut
from .common import MAX_LIMIT, errors, hit_json, image_row, library_of, require_images

router = APIRouter(prefix="/api", tags=["search"])

QText = Annotated[str, Query(alias="q", max_length=2000, description='query language: words, id:N, tag:NAME, "+", "-", '
                                                            'weights like 2:"at night"')]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="how many hits at most")]
Threshold = Annotated[float | None, Query(allow_inf_nan=False, ge=-10, le=10,
                                          description="only hits scoring at least this")]
Where = Annotated[list[str], Query(max_length=50, description="filters, e.g. taken>=2020-01-01, camera~canon, "
                                                               "folder=trips/ (repeatable)")]
SortBy = Literal["relevance", "date", "newest"]
Sort = Annotated[SortBy, Query(description="relevance; or the relevant hits by date taken, oldest (date) or "
                                           "newest first")]
Tags = Annotated[list[str], Query(max_length=50, description="tags the hits must carry (repeatable)")]
SoftTags = Annotated[bool, Query(description="tags rank instead of filter")]
Keywords = Annotated[bool, Query(description="fuse keyword matches (file names, descriptions, tags) with the "
                                             "vector ranking")]
Adaptive = Annotated[bool, Query(description="drop hits that score far below the best")]
ImageId = Annotated[int, PathParam(ge=1, le=2**62, description="an indexed image's id")]
After = Annotated[str | None, Query(max_length=200, description="the `next` token of the page before: the hits after "
                                                                "those (the same search's parameters again)")]
MAX_DEPTH = 5000  # the deepest hit a search pages to


def _key(*parts) -> str:
    """What a `next` token is bound to: the search's parameters (the page size aside)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _token(shown: int, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"n": shown, "k": key}).encode()).decode().rstrip("=")


def _shown(after: str | None, key: str) -> int:
    """How many hits the pages before showed, from a `next` token of this same search; 400 bad_cursor otherwise."""
    if after is None:
        return 0
    try:
        d = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
        n, k = int(d["n"]), d["k"]
    except (ValueError, TypeError, KeyError):
        n, k = -1, None
    if k != key or not 0 < n < MAX_DEPTH:
        raise ApiError(400, "bad_cursor", "bad page token: pass the `next` value the previous page of this same "
                       "search handed out, with the same query, filters and sort")
    return n


def _paged(search, shown: int, limit: int, key: str, sort: str):
    """One page of a search: the search run for the hits shown so far plus this page, the shown ones cut off; a
    `next` token while a full page came back (relevance order only: a date sort orders the `limit` most relevant)."""
    depth = min(shown + limit, MAX_DEPTH)
    hits = search(depth)
    page = hits[shown:depth]
    nxt = _token(depth, key) if sort == "relevance" and len(hits) >= depth and depth < MAX_DEPTH else None
    return page, getattr(hits, "note", None), nxt


def _checked_where(where: list[str]) -> tuple[str, ...]:
    for w in where:
        if len(w) > 500 or not w.strip():
            raise ApiError(400, "bad_filter", "each where filter must be 1 to 500 characters")
    return tuple(w.strip() for w in where)


def _options(limit: int, threshold: float | None, where: list[str], sort: str, soft_tags: bool = False,
             keywords: bool = True, adaptive: bool = False) -> SearchRequest:
    return SearchRequest(limit=limit, threshold=threshold, where=_checked_where(where),
                         sort=None if sort == "relevance" else sort, soft_tags=soft_tags, keywords=keywords,
                         adaptive=True if adaptive else None)


def _answer(label: str, hits: list, t0: float, note: str | None = None, nxt: str | None = None) -> dict:
    return {"query": label, "count": len(hits), "took_ms": round((time.perf_counter() - t0) * 1000, 2),
            "hits": [hit_json(h) for h in hits], "note": note, "next": nxt}


@router.get("/search", response_model=SearchOut, responses=errors(400, 409, 413, 503))
def search_get(request: Request, q_text: QText = "", limit: Limit = 20, threshold: Threshold = None,
               where: Where = [], sort: Sort = "relevance", tags: Tags = [],  # noqa: B006
               soft_tags: SoftTags = False, keywords: Keywords = True, adaptive: Adaptive = False,
               after: After = None) -> dict:
    """Search by a query string (the same query language as `picseek search`), optionally with filters. `next`:
    the token of the following page (pass it as `after` with the same parameters)."""
    t0 = time.perf_counter()
    key = _key("get", q_text, sorted(tags), where, threshold, sort, soft_tags, keywords, adaptive)
    shown = _shown(after, key)
    require_images(request)
    text, found = q.compose(q_text, tags), {}

    def search(depth):
        found["label"], hits, note = q.run(library_of(request), text, request=_options(
            depth, threshold, where, sort, soft_tags, keywords, adaptive))
        hits.note = note
        return hits

    hits, note, nxt = _paged(search, shown, limit, key, sort)
    return _answer(found["label"], hits, t0, note, nxt)


@router.post("/search", response_model=SearchOut, responses=errors(400, 409, 413, 415, 503))
def search_post(request: Request,
                text: Annotated[str, Form(max_length=2000, description="query language, as for GET")] = "",
                image: Annotated[UploadFile | None, File(description="an example image (JPEG, PNG, WebP, ...)")]
                = None,
                image_weight: Annotated[float, Form(ge=-10, le=10, allow_inf_nan=False,
                                                    description="weight of the image against the text")] = 1.0,
                limit: Annotated[int, Form(ge=1, le=MAX_LIMIT)] = 20,
                threshold: Annotated[float | None, Form(ge=-10, le=10, allow_inf_nan=False)] = None,
                where: Annotated[list[str], Form(max_length=50)] = [],  # noqa: B006
                sort: Annotated[SortBy, Form()] = "relevance",
                tags: Annotated[list[str], Form(max_length=50)] = [],  # noqa: B006
                soft_tags: Annotated[bool, Form()] = False,
                keywords: Annotated[bool, Form()] = True,
                adaptive: Annotated[bool, Form()] = False,
                after: Annotated[str | None, Form(max_length=200, description="the `next` token of the page "
                                                                           "before")] = None) -> dict:
    """Search with text, an uploaded example image, or both (multipart/form-data), plus tags and filters."""
    t0 = time.perf_counter()
    settings = request.app.state.settings
    img, digest = None, None
    if image is not None and (image.filename or image.size):
        data = image.file.read(settings.max_upload_bytes + 1)
        img = q.load_upload(data, settings.max_upload_bytes, settings.max_upload_pixels)
        digest = hashlib.sha256(data).hexdigest()
    key = _key("post", text, digest, image_weight, sorted(tags), where, threshold, sort, soft_tags, keywords,
               adaptive)
    shown = _shown(after, key)
    require_images(request)
    composed, found = q.compose(text, tags), {}

    def search(depth):
        found["label"], hits, note = q.run(library_of(request), composed, image=img, image_weight=image_weight,
                                           request=_options(depth, threshold, where, sort, soft_tags, keywords,
                                                            adaptive))
        hits.note = note
        return hits

    hits, note, nxt = _paged(search, shown, limit, key, sort)
    return _answer(found["label"], hits, t0, note, nxt)


@router.get("/images/{image_id}/similar", response_model=SearchOut, tags=["images"],
            responses=errors(400, 404, 503))
def similar(request: Request, image_id: ImageId, limit: Limit = 20, threshold: Threshold = None,
            where: Where = [], sort: Sort = "relevance", after: After = None) -> dict:  # noqa: B006
    """More like this: the images nearest to an indexed one (the image itself left out)."""
    t0 = time.perf_counter()
    key = _key("similar", image_id, where, threshold, sort)
    shown = _shown(after, key)
    image_row(request, image_id)
    library = library_of(request)
    opts = _options(limit, threshold, where, sort)
    q.ensure_model(library)

    def search(depth):
        return library.similar(image_id, limit=depth, where=opts.where, threshold=threshold, sort=opts.sort)

    hits, note, nxt = _paged(search, shown, limit, key, sort)
    return _answer(f"id:{image_id}", hits, t0, note, nxt)


@router.get("/browse", response_model=BrowseOut, responses=errors(400, 409))
def browse(request: Request, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="hits per page")] = 50,
           after: Annotated[str | None, Query(max_length=200, description="the `next` cursor of the page before")]
           = None, where: Where = [], tags: Tags = []) -> dict:  # noqa: B006
    """The library newest first (date taken, else file time), a page at a time: `next` is the cursor of the page
    after this one (null: the last page). Keyset paging: a deep page costs what the first one does."""
    t0 = time.perf_counter()
    require_images(request)
    if after is not None:
        try:
            parse_cursor(after)
        except UsageError:
            raise ApiError(400, "bad_cursor", "bad page cursor: pass the `next` value the previous page handed out "
                           "(or none for the first page)") from None
    tags = [t.strip() for t in tags if t.strip()]
    for tag in tags:
        if not tag.isprintable():
            raise ApiError(400, "bad_tag", f"tag {tag!r} must be printable text")
    library = library_of(request)
    hits, nxt = library.browse(where=_checked_where(where), tags=tags, limit=limit, after=after)
    rows = library.store.get_images([h.id for h in hits])
    out = []
    for hit in hits:
        d = hit_json(hit)
        d["date"] = _date(hit.taken_at, rows.get(hit.id, {}).get("mtime_ns"))
        out.append(d)
    return {"count": len(out), "took_ms": round((time.perf_counter() - t0) * 1000, 2), "hits": out, "next": nxt}


def _date(taken_at: str | None, mtime_ns: int | None) -> str | None:
    """What browsing sorts by: the date taken, else the file's time (UTC)."""
    if taken_at:
        return taken_at[:19]
    if mtime_ns is None:
        return None
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
