"""Acting on several images at once: tags added and removed in bulk, a zip of the originals, zero-shot
classification (an upload or indexed images; optionally stored as tags)."""
from __future__ import annotations

import os
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from ...errors import ImageError, UsageError
from ...ingest.paths import is_remote
from ...paths import shown
from ..errors import ApiError
from ..query import ensure_model, load_upload
from ..schemas import (
    BulkTagsIn,
    BulkTagsOut,
    ClassifyOut,
    ClassifyTagsIn,
    ClassifyTagsOut,
    DownloadIn,
    LabelSetIn,
    LabelSetsOut,
)
from ..security import write_access
from .common import errors, library_of, open_indexed, require_images
from .images import _clean_tags

router = APIRouter(prefix="/api", tags=["actions"])
MAX_IDS = 5000  # bulk tags and classification: ids in one request
CHUNK = 1 << 20
_classify_lock = threading.Lock()  # label vectors are cheap, but one model run at a time keeps memory bounded


def _known(request: Request, ids: list[int]) -> dict[int, dict]:
    """The stored rows of `ids`, or a 404 naming the ids that are not indexed images (nothing is done then)."""
    ids = list(dict.fromkeys(ids))
    rows = library_of(request).store.get_images(ids)
    missing = [i for i in ids if i not in rows]
    if missing:
        more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
        raise ApiError(404, "not_found", "no indexed image with id " + ", ".join(map(str, missing[:20])) + more
                       + ": nothing was changed")
    return rows


def _tags_by_id(request: Request, ids: list[int]) -> dict[str, list[dict]]:
    tags = library_of(request).store.get_tags(ids)
    return {str(i): tags.get(i, []) for i in ids}


@router.post("/tags", response_model=BulkTagsOut, responses=errors(400, 401, 403, 404),
             dependencies=[Depends(write_access)])
def bulk_tags(request: Request, body: BulkTagsIn) -> dict:
    """Add and remove tags on many images at once (`{"ids": [...], "add": [...], "remove": [...]}`): every id must
    be an indexed image (404 naming the others, and nothing changes). Needs the token when the server requires one."""
    if not body.add and not body.remove:
        raise ApiError(400, "bad_tag", "nothing to do: give tags to `add`, to `remove`, or both")
    ids = [i for i in dict.fromkeys(body.ids)]
    _known(request, ids)
    add, remove = _clean_tags(body.add), _clean_tags(body.remove)
    done = library_of(request).tag_images(ids, add=add, remove=remove)
    return {"images": len(ids), **done, "tags": _tags_by_id(request, ids)}


# -- a zip of the originals ------------------------------------------------------------------------------------------
class _Pipe:
    """What zipfile writes into: bytes collected until the generator hands them on (an unseekable stream, so
    zipfile writes data descriptors and never seeks back)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _member_name(row: dict, used: set[str]) -> str:
    name = shown(os.path.basename(row["path"].rstrip("/"))).replace("\\", "_") or f"image-{row['id']}"
    if name in used or name.startswith("."):
        stem, dot, ext = name.rpartition(".")
        name = f"{stem or ext}-{row['id']}{dot}{ext if stem else ''}".lstrip(".")
    used.add(name)
    return name


def _zip_time(mtime_ns: int | None) -> tuple:
    """A file time as zip stores it (local time; zip cannot hold times before 1980)."""
    stamp = time.localtime(mtime_ns / 1e9) if mtime_ns else time.localtime()
    return tuple(stamp[:6]) if stamp.tm_year >= 1980 else (1980, 1, 1, 0, 0, 0)


def _zip_stream(library, rows: list[dict]) -> Iterator[bytes]:
    """The zip, a chunk at a time: each file is opened through the same checks as GET /api/images/{id} just before
    it is copied; a file that is gone, changed or remote is left out and named in SKIPPED.txt at the end."""
    pipe, used, skipped = _Pipe(), set(), []
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for row in rows:
            if is_remote(row["path"]):
                skipped.append(f"{row['id']}\t{shown(row['path'])}\tin remote storage: fetch it by its image_url")
                continue
            try:
                f = open_indexed(library, row)
            except ApiError as exc:
                skipped.append(f"{row['id']}\t{shown(row['path'])}\t{exc.message}")
                continue
            with f:
                info = zipfile.ZipInfo(_member_name(row, used), date_time=_zip_time(row.get("mtime_ns")))
                info.compress_type = zipfile.ZIP_STORED
                left = os.fstat(f.fileno()).st_size
                with zf.open(info, "w", force_zip64=left > 0x7FFF0000) as member:
                    while left > 0 and (chunk := f.read(min(CHUNK, left))):
                        left -= len(chunk)
                        member.write(chunk)
                        yield pipe.take()
            yield pipe.take()
        if skipped:
            zf.writestr("SKIPPED.txt", "images left out (id, path, why):\n" + "\n".join(skipped) + "\n")
    yield pipe.take()


@router.post("/download", responses={200: {"content": {"application/zip": {}},
                                           "description": "a zip of the original files"}, **errors(404, 413)})
def download(request: Request, body: DownloadIn) -> StreamingResponse:
    """A zip of the original files of indexed images (`{"ids": [...]}`), streamed as it is written (stored, not
    compressed: photos do not shrink). At most `max_download_images` images and `max_download_bytes` bytes
    (413 download_too_large); an id that is not an indexed image is a 404 naming it. A file that is gone or changed
    since it was indexed is left out and named in SKIPPED.txt inside the zip."""
    settings = request.app.state.settings
    ids = list(dict.fromkeys(body.ids))
    if len(ids) > settings.max_download_images:
        raise ApiError(413, "download_too_large", f"{len(ids)} images; one download holds at most "
                       f"{settings.max_download_images}: select fewer")
    rows = _known(request, ids)
    total = sum(rows[i].get("size") or 0 for i in ids)
    if total > settings.max_download_bytes:
        raise ApiError(413, "download_too_large", f"the files hold {total / 1e6:.0f} MB; one download holds at "
                       f"most {settings.max_download_bytes / 1e6:.0f} MB: select fewer")
    stream = _zip_stream(library_of(request), [rows[i] for i in ids])
    name = f"picseek-{len(ids)}-images.zip"
    return StreamingResponse(stream, media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


# -- zero-shot classification ----------------------------------------------------------------------------------------
def _labels(text: str) -> list[str]:
    from ...learn.classify import parse_labels

    try:
        return parse_labels(text)
    except UsageError as exc:
        raise ApiError(400, "bad_labels", f"{exc}: e.g. labels=cat,dog,car") from None


def _labels_or_set(request: Request, labels: str, labelset: str) -> list[str]:
    """The labels given as text, or those of a label set saved in the library (exactly one of the two)."""
    if bool(labels.strip()) == bool(labelset.strip()):
        raise ApiError(400, "bad_labels", "give labels (comma-separated) or the name of a saved label set (not both)")
    if labels.strip():
        return _labels(labels)
    sets = library_of(request).label_sets()
    if labelset not in sets:
        raise ApiError(404, "not_found", f"no label set {labelset!r}" + (
            f": saved ones are {', '.join(sorted(sets))}" if sets else " (none saved yet: PUT /api/labelsets/NAME)"))
    return sets[labelset]


@router.get("/labelsets", response_model=LabelSetsOut, responses=errors(400))
def label_sets(request: Request) -> dict:
    """The label sets saved in the library, by name (labels to classify into, e.g. "rooms": kitchen,bedroom,...)."""
    return {"sets": library_of(request).label_sets()}


@router.put("/labelsets/{name}", response_model=LabelSetsOut, responses=errors(400, 401, 403),
            dependencies=[Depends(write_access)])
def save_label_set(request: Request, name: Annotated[str, PathParam(min_length=1, max_length=64)],
                   body: LabelSetIn) -> dict:
    """Save (or replace) a label set: `{"labels": "cat,dog,car"}` or a list. Needs the token when the server
    requires one."""
    try:
        library_of(request).save_label_set(name, body.labels)
    except UsageError as exc:
        raise ApiError(400, "bad_labels", str(exc)) from None
    return {"sets": library_of(request).label_sets()}


@router.delete("/labelsets/{name}", response_model=LabelSetsOut, responses=errors(401, 403, 404),
               dependencies=[Depends(write_access)])
def delete_label_set(request: Request, name: Annotated[str, PathParam(min_length=1, max_length=64)]) -> dict:
    """Forget a saved label set."""
    if not library_of(request).delete_label_set(name):
        raise ApiError(404, "not_found", f"no label set {name!r}")
    return {"sets": library_of(request).label_sets()}


def _ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ApiError(400, "bad_request", "ids: comma-separated image ids, e.g. 12,15,40") from None
    if not ids or len(ids) > MAX_IDS or any(not 1 <= i <= 2**62 for i in ids):
        raise ApiError(400, "bad_request", f"ids: 1 to {MAX_IDS} image ids")
    return list(dict.fromkeys(ids))


def _prediction(p) -> dict:
    d = p.as_dict()
    d["path"] = shown(d["path"])
    return d


@router.post("/classify", response_model=ClassifyOut, responses=errors(400, 404, 409, 413, 503))
def classify(request: Request,
             labels: Annotated[str, Form(max_length=5000, description="comma-separated labels, e.g. cat,dog,car")] = "",
             labelset: Annotated[str, Form(max_length=64, description="or the name of a label set saved in the "
                                                                      "library (GET /api/labelsets)")] = "",
             image: Annotated[UploadFile | None, File(description="an image to classify")] = None,
             ids: Annotated[str, Form(max_length=100_000, description="or indexed images' ids, comma-separated "
                                                                      "(`id:12` works too)")] = "",
             top: Annotated[int, Form(ge=1, le=1000, description="labels per image, most probable first")] = 1000
             ) -> dict:
    """Zero-shot classification (as `picseek classify`): an uploaded image, or indexed images by id, against
    comma-separated labels; each label's probability (softmax over the labels given: they sum to 1)."""
    t0 = time.perf_counter()
    settings, library = request.app.state.settings, library_of(request)
    names = _labels_or_set(request, labels, labelset)
    has_image = image is not None and (image.filename or image.size)
    if has_image == bool(ids.strip()):
        raise ApiError(400, "bad_request", "give an image to classify, or ids of indexed images (not both)")
    if has_image:
        data = image.file.read(settings.max_upload_bytes + 1)
        items = [load_upload(data, settings.max_upload_bytes, settings.max_upload_pixels)]
    else:
        items = _ids(ids.strip().removeprefix("id:"))
        _known(request, items)
    if not library.recorded_model:
        raise ApiError(409, "empty_library", "the library has no model yet: index a folder first")
    ensure_model(library)
    with _classify_lock:
        preds = library.classify(items, names, top=top)
    for p in preds:
        if p.error and not has_image:
            raise ApiError(404, "not_found", p.error)
        if p.error:
            raise ImageError(p.error)
    return {"labels": names, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
            "predictions": [_prediction(p) for p in preds]}


@router.post("/classify/tags", response_model=ClassifyTagsOut, responses=errors(400, 401, 403, 404, 409, 503),
             dependencies=[Depends(write_access)])
def classify_to_tags(request: Request, body: ClassifyTagsIn) -> dict:
    """Classify indexed images (`ids`, or `all`: the whole library) into labels and store each label whose
    probability reaches `min_score` as a tag (source "classify"; earlier classify tags of these labels on these
    images are replaced). A write."""
    t0 = time.perf_counter()
    library = library_of(request)
    names = _labels_or_set(request, body.labels, body.labelset)
    ids = list(dict.fromkeys(body.ids))
    if body.all == bool(ids):
        raise ApiError(400, "bad_request", "give ids of indexed images, or all: true (not both)")
    if body.all:
        require_images(request)
        ensure_model(library)
        with _classify_lock:
            report, _ = library.classify_all(names, store_tags=True, min_score=body.min_score, top=1)
        return {"labels": names, "took_ms": round((time.perf_counter() - t0) * 1000, 2), "predictions": [],
                "tags": {}, "report": report.as_dict()}
    _known(request, ids)
    ensure_model(library)
    with _classify_lock:
        preds = library.classify(ids, names, top=len(names), store_tags=True, min_score=body.min_score)
    return {"labels": names, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
            "predictions": [_prediction(p) for p in preds], "tags": _tags_by_id(request, ids)}
