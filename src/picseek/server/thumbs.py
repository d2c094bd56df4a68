"""Thumbnails of indexed images, cached in the library folder (<library>/thumbs/), written atomically.

The cache key is the image's content hash and the size, so a changed file gets a new thumbnail and a moved one
keeps its own. A thumbnail is made only from the file the route checked and opened (routes/common.open_indexed),
never from its path again, and only from bytes whose hash is the indexed one: what is cached under a hash is that
content, whatever the path holds now. JPEGs are decoded at reduced size (draft mode), so a 12 MP photo costs a few
tens of ms once.
"""
from __future__ import annotations

import hashlib
import io
import os
import string
import threading
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, features

from .._fs import write_atomic
from ..errors import ImageError, library_io_error
from ..ingest import contenthash
from ..ingest.images import MAX_FILE_BYTES, load_image
from ..ingest.paths import is_remote
from ..ingest.remote import read_url
from ..models.base import to_rgb
from ..paths import shown

THUMB_DIR = "thumbs"
_WEBP = features.check("webp")
FORMAT, MEDIA_TYPE, SUFFIX = ("WEBP", "image/webp", ".webp") if _WEBP else ("JPEG", "image/jpeg", ".jpg")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


SIZES = (160, 320, 640)  # the only sizes made, so the cache stays small whatever clients ask for


def snap(size: int) -> int:
    return next((s for s in SIZES if s >= size), SIZES[-1])


def thumb_path(library_dir: Path, content_hash: str, size: int) -> Path:
    """<thumbs>/<first 2 hex digits>/<kind><hex>-<size><suffix>: the kind prefix of a current hash ("b3:") kept
    in the name (so it never meets a legacy blake2b name), the folders spread by the hex digits either way."""
    kind, _, digits = content_hash.rpartition(":")
    safe = "".join(c for c in digits if c in "0123456789abcdef") or "nohash"
    kind = "".join(c for c in kind if c.isascii() and c.isalnum())
    return Path(library_dir) / THUMB_DIR / safe[:2] / f"{kind}{safe}-{size}{SUFFIX}"


def _path_key(path: str) -> str:
    """The cache key of an image indexed without a content hash (imported with `--no-hash`): its path's hash, so two
    such images never share a thumbnail (the file is not checked against a hash then)."""
    return hashlib.blake2b(os.fsencode(path), digest_size=16, person=b"picseek-path").hexdigest()


class ContentChanged(ImageError):
    """The bytes read are not the indexed content (the file changed since it was indexed)."""


def thumbnail(library_dir: Path, row: dict, size: int, max_pixels: int, source: BinaryIO | None = None) -> Path:
    """The cached thumbnail of an indexed image (made now if missing). `source`: the checked, open file of a local
    image (None for an object in remote storage, read by URL). Raises ContentChanged when the bytes are not the
    indexed ones, ImageError if the file is unusable."""
    dest = thumb_path(library_dir, row.get("content_hash") or _path_key(row["path"]), size)
    if dest.is_file():
        return dest
    with _lock_for(str(dest)):
        if dest.is_file():  # another request made it meanwhile
            return dest
        data = _read(row["path"], source)
        _check_hash(data, row.get("content_hash") or "")
        img = _small_image(data, row.get("format"), size, max_pixels)
        try:
            _write_atomic(img, dest)
        except OSError as exc:  # a full or read-only library disk: one line (a 503), not a 500 with a traceback
            if err := library_io_error(exc, library_dir):
                raise err from exc
            raise
    return dest


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        if len(_locks) > 4096:
            _locks.clear()
        return _locks.setdefault(key, threading.Lock())


def _read(path: str, source: BinaryIO | None) -> bytes:
    try:
        if is_remote(path):  # an object in storage (ingest/remote.py), read with the same cap
            data, declared = read_url(path, MAX_FILE_BYTES)
            if max(declared or 0, len(data)) > MAX_FILE_BYTES:
                raise ImageError("file too large")
            return data
        if source is None:
            raise ValueError("a local image is read only from the file the route checked and opened")
        if os.fstat(source.fileno()).st_size > MAX_FILE_BYTES:
            raise ImageError("file too large")
        return source.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ImageError(f"cannot read {shown(path)}: {exc.strerror or exc}") from None


def _check_hash(data: bytes, expected: str) -> None:
    """The indexed hash (either kind of ingest/contenthash.py, as ingest/images.file_hash) must be the bytes' own;
    rows without one, or with a value of no known kind, pass."""
    digits = expected.removeprefix(contenthash.PREFIX)
    if len(digits) != 32 or not set(digits) <= set(string.hexdigits):
        return
    if not contenthash.matches(data, expected):
        raise ContentChanged("the file changed since it was indexed")


def _small_image(data: bytes, fmt: str | None, size: int, max_pixels: int) -> Image.Image:
    img = _jpeg_draft(data, size, max_pixels) if fmt == "JPEG" else None
    if img is None:
        img = load_image(data, max_pixels)
    img = to_rgb(img)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def _jpeg_draft(data: bytes, size: int, max_pixels: int) -> Image.Image | None:
    """A JPEG decoded at 1/2..1/8 scale; None when the bytes are not a readable JPEG."""
    try:
        img = Image.open(io.BytesIO(data), formats=("JPEG", "MPO"))
        if img.width * img.height > max_pixels:
            return None  # load_image refuses it with its own message
        img.draft("RGB", (size, size))
        img.load()
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - any problem: fall back to the careful loader, which explains it
        return None


def _write_atomic(img: Image.Image, dest: Path) -> None:
    write_atomic(dest, lambda f: img.save(f, FORMAT, quality=82), fsync=False)  # (a lost thumbnail is made again)
