"""What the routes share: the app's state, the error responses OpenAPI documents, hits as JSON, and the one
check every local file passes before it is served (`open_indexed`)."""
from __future__ import annotations

import logging
import os
import stat
import time
from typing import BinaryIO

from fastapi import Request

from ... import config
from ...ingest.paths import is_remote
from ...paths import shown, within
from ..errors import ApiError
from ..schemas import ErrorOut

log = logging.getLogger(__name__)
MAX_LIMIT = 500
# O_NOFOLLOW: the last component of a resolved path must not have become a link since; O_NONBLOCK: a FIFO swapped in
# after the check must not hang the open (the fstat comparison then refuses it). Both 0 where the OS lacks them.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def errors(*statuses: int) -> dict:
    """OpenAPI `responses` entries for the given error statuses (every error is an ErrorOut)."""
    return {s: {"model": ErrorOut} for s in (*statuses, 422)}


def library_of(request: Request):
    return request.app.state.library


def image_urls(image_id: int) -> dict:
    return {"image_url": f"/api/images/{image_id}", "thumbnail_url": f"/api/images/{image_id}/thumbnail"}


def hit_json(hit) -> dict:
    """A hit as JSON; the path in its shown form (a name with undecodable bytes cannot be JSON text)."""
    d = hit.as_dict()
    d["path"] = shown(d["path"])
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


def _real_roots(library) -> list[str]:
    return [os.path.realpath(r) for r in library.store.roots() if not is_remote(r)]


def open_indexed(library, row: dict) -> BinaryIO | None:
    """The indexed file of `row`, opened for reading, or an ApiError; None for an object in remote storage.

    The path may have changed since it was indexed (replaced by a link to /etc/shadow, by a FIFO, by another photo),
    so it is resolved and checked: a regular file (404 file_missing otherwise); where a link is on the way, leading
    inside an indexed root unless the follow_links setting is on (also 404 file_missing, so the answer does not say
    where a link points; a path without links is where it was indexed, also in a library made by `merge`, whose
    runs name shard folders, not image folders), with the
    indexed size and mtime (409 file_changed). The resolved path is then opened and the open file's device and inode
    must be the checked ones: a folder swapped for a link between the check and the open is refused, and the caller
    reads only this file object, never the path again. The caller closes it. (A link to another file inside the
    roots with the same size and mtime to the nanosecond passes: it reveals nothing outside the library, and a new
    thumbnail is still made only from bytes with the indexed hash.)"""
    path = row["path"]
    if is_remote(path):
        return None
    gone = ApiError(404, "file_missing", f"image {row['id']} is indexed but its file is gone: index again")
    changed = ApiError(409, "file_changed", f"image {row['id']} changed since it was indexed: index again")
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        raise gone from None
    if not stat.S_ISREG(st.st_mode):
        raise gone
    if real != os.path.normpath(path) and not config.get("follow_links") and not within(real, _real_roots(library)):
        log.warning("not serving image %s: %s leads to %s, outside the indexed folders (follow_links is off)",
                    row["id"], shown(path), shown(real))
        raise gone
    if (st.st_size, st.st_mtime_ns) != (row.get("size"), row.get("mtime_ns")):
        raise changed
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError:
        raise changed from None  # it was there a moment ago: replaced (by a link, a FIFO, ...) meanwhile
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(opened.st_mode) \
                or (opened.st_size, opened.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise changed
        if os.name == "posix":
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


REINDEX_EVERY = 60.0  # seconds: the least time between two runs started because a served file had changed


def checked_file(request: Request, row: dict) -> BinaryIO | None:
    """open_indexed for a request; a file that changed or went since it was indexed also starts an index run of the
    server's folders (at most one a minute), so the library catches up by itself instead of answering 409 until
    someone indexes again."""
    try:
        return open_indexed(library_of(request), row)
    except ApiError as exc:
        if exc.code in ("file_changed", "file_missing"):
            _reindex_soon(request)
        raise


def _reindex_soon(request: Request) -> None:
    state, now = request.app.state, time.monotonic()
    indexer = getattr(state, "indexer", None)
    if indexer is None or not indexer.folders or now - getattr(state, "reindexed_at", -REINDEX_EVERY) < REINDEX_EVERY:
        return
    state.reindexed_at = now
    if indexer.start():
        log.info("a served file changed since it was indexed: indexing the server's folders again")

