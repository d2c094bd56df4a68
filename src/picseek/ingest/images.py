"""Safe, fast image decoding for indexing and queries, plus EXIF metadata.

This module runs inside decode worker processes, so it imports only Pillow, numpy and the standard library
(never torch). `decode_file` is the worker entry point: it reads a file's bytes once, hashes them, opens the
image from memory, refuses decompression bombs from the header, decodes JPEGs at reduced size (draft mode),
applies the EXIF orientation and returns the model-ready pixels from `prepare_image`. It never raises: a
file that cannot be used comes back with a one-line `error`.

Only photo formats are opened (JPEG, PNG, WebP, GIF, BMP, TIFF, and HEIF/AVIF where available): the content
decides the format, not the extension, but Pillow's more exotic parsers (EPS runs Ghostscript) never see
untrusted files.
"""
from __future__ import annotations

import functools
import io
import os
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .. import config
from ..errors import ImageError, one_line
from ..models.base import ImageSpec, prepare_image, to_rgb
from ..store.base import TextRecord
from . import contenthash
from .exif import ImageInfo, exif_of, info_from, orientation_of
from .paths import AVIF_SUPPORTED as _HAS_AVIF
from .paths import HEIF_SUPPORTED as _HAS_HEIF
from .paths import IMAGE_EXTENSIONS, PILLOW_AVIF
from .paths import is_url as _is_url

_reason = functools.partial(one_line, whole=True, named=True, limit=200)  # (an image's or a URL's reason)

__all__ = ["IMAGE_EXTENSIONS", "DEFAULT_MAX_PIXELS", "MAX_FILE_BYTES", "ImageInfo", "Decoded", "decode_file",
           "load_image", "read_info", "file_hash", "file_hashes"]

# bigger images are refused as possible decompression bombs (the max_image_pixels setting's default)
DEFAULT_MAX_PIXELS: int = config.default("max_image_pixels")
MAX_FILE_BYTES = 2 * 1024**3  # files above this are not read into a worker's memory
# IMAGE_EXTENSIONS (ingest/paths.py): the file names a scan hands to decode_file; HEIC/AVIF where a plugin reads them

# The Pillow formats we open, in the order they are tried. MPO: a JPEG with extra pictures.
_WANTED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF", "GIF", "TIFF", "MPO", "BMP")
_FORMAT_NAMES = {"MPO": "JPEG"}
_CHUNK = 1 << 20


@dataclass
class Decoded:
    """What a decode worker sends back.

    Either `error` is None and `pixels` and `info` are set, or `error` says why the file was skipped and
    both are None.
    """

    path: str
    pixels: np.ndarray | None  # uint8 (size, size, 3)
    info: ImageInfo | None
    content_hash: str  # of the file's bytes, current kind ("b3:" + hex, ingest/contenthash.py); "" if unread
    error: str | None
    text: TextRecord | None = None  # the words read in the image (OCR); None: not asked for, or no image


# ------------------------------------------------------------------------------------------ public API


def decode_file(path: str, spec: ImageSpec, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                draft: int | None = 1, ocr: bool = False) -> Decoded:
    """Read, check and decode one file into model-ready pixels. Never raises (bar KeyboardInterrupt).
    draft: JPEGs decode at a reduced scale no smaller than `draft` x the model's input on either side; None
    decodes at full size (the reference that benchmarks/decode_quality.py measures the reduced decode against).
    ocr: also read the words in the image (`Decoded.text`, read_text)."""
    path = os.fspath(path)
    try:
        data = _read_file(path)
    except _FileTooLarge as exc:
        return Decoded(path, None, None, _hash_or_empty(path), str(exc))
    except Exception as exc:  # noqa: BLE001 - OSError mostly; a worker must survive anything
        return Decoded(path, None, None, "", f"cannot read file: {_os_reason(exc)}")
    digest = contenthash.hash_bytes(data)  # the bytes read once: hashed and decoded from the same buffer
    try:
        with _quiet():
            pixels, info, small = _decode(data, spec, max_pixels, draft)
    except ImageError as exc:
        return Decoded(path, None, None, digest, str(exc))
    except Exception as exc:  # noqa: BLE001 - MemoryError, ValueError, ...: recorded, never fatal
        return Decoded(path, None, None, digest, _reason(exc))
    return Decoded(path, pixels, info, digest, None, read_text(data, small, max_pixels) if ocr else None)


_OCR_READER = None  # one per decode worker, made on its first image


def read_text(data: bytes, small: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> TextRecord:
    """The words in an image (a file's bytes, and `small`: the oriented image already decoded for the model).
    The cheap first pass looks at `small`; only an image it passes is decoded again at about ocr.OCR_SIDE (JPEG
    draft at that scale, the EXIF orientation applied, so rotated text reads upright) for the full pass. Never
    raises: a failure is a record with no words and the reason (the image is not tried again)."""
    from . import ocr  # (its models are loaded once per worker, on the first image that asks)

    global _OCR_READER
    try:
        with _quiet():
            if _OCR_READER is None:
                _OCR_READER = ocr.OcrReader(threads=1)
            if not _OCR_READER.likely(small):
                return TextRecord("", [], None)
            page = _OCR_READER.read(_ocr_image(data, max_pixels, ocr.OCR_SIDE))
        return TextRecord(page.text, page.to_json(), None)
    except Exception as exc:  # noqa: BLE001 - a model error, MemoryError, ...: recorded, never fatal
        return TextRecord("", [], f"reading text failed: {_reason(exc)}")


def _ocr_image(data: bytes, max_pixels: int, side: int) -> Image.Image:
    """The image decoded with its long side at least `side` where it is that big (JPEG draft at the largest
    reduction that keeps it), oriented, then scaled down to `side`."""
    img = _open(data, max_pixels)
    w, h = img.size
    long = max(w, h)
    if long > side:  # draft keeps both sides at least the size asked: ask for the image's own shape at `side`
        img.draft("RGB", (max(1, -(-w * side // long)), max(1, -(-h * side // long))))
    _load(img)
    img = _orient(img, orientation_of(exif_of(img)))
    if max(img.size) > side:
        img = to_rgb(img) if img.mode not in ("RGB", "L") else img
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def load_image(source: str | os.PathLike | bytes | BinaryIO,
               max_pixels: int = DEFAULT_MAX_PIXELS, *, draft: int | None = None) -> Image.Image:
    """A query image: fully loaded, EXIF-oriented, first frame. Raises ImageError with a one-line reason.
    `draft`: a JPEG may decode at a reduced scale (1/2 to 1/8) no smaller than `draft` pixels on either side (for
    thumbnails); None decodes at full size."""
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    where = f"cannot read image {name}" if name else "cannot read image"
    try:
        if name is not None:
            data = _read_file(name)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            data = source.read()
    except _FileTooLarge as exc:
        raise ImageError(f"{where}: {exc}") from None
    except OSError as exc:
        raise ImageError(f"{where}: {_os_reason(exc)}") from None
    try:
        with _quiet():
            img = _open(data, max_pixels)
            if draft:
                img.draft("RGB", (draft, draft))
            _load(img)
            return _orient(img, orientation_of(exif_of(img)))
    except ImageError as exc:
        raise ImageError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{where}: {_reason(exc)}") from None


def read_info(img: Image.Image) -> ImageInfo:
    """Size (after orientation), format and EXIF of an opened image; bad EXIF gives None fields, not errors.

    Call it before `draft()`: it reports the image's current size.
    """
    return info_from(img, img.size, _format_name(img.format))


def file_hash(path: str | os.PathLike, kind: str = contenthash.CURRENT) -> str:
    """The content hash of a file's bytes, read in chunks: in the current kind the same value as
    `Decoded.content_hash`; `kind` = contenthash.LEGACY gives what libraries made before issue 20 stored."""
    return file_hashes(path, (kind,))[kind]


def file_hashes(path: str | os.PathLike, kinds: Iterable[str]) -> dict[str, str]:
    """The file's content hash in each of `kinds` (ingest/contenthash.py), from one read of its bytes: a moved file
    compared with rows of both kinds is read once."""
    hashers = {k: contenthash.hasher(k) for k in kinds}
    if _is_url(path):
        data = _read_url(os.fspath(path))
        for h in hashers.values():
            h.update(data)
    else:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                for h in hashers.values():
                    h.update(chunk)
    return {k: h.hexdigest() for k, h in hashers.items()}


# ------------------------------------------------------------------------------------------ decoding


class _FileTooLarge(Exception):
    pass


def _read_file(path: str) -> bytes:
    if _is_url(path):
        return _read_url(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            gib = 1024**3
            raise _FileTooLarge(f"file too large ({size / gib:.1f} GiB, limit {MAX_FILE_BYTES / gib:g} GiB)")
        return f.read()


def _read_url(url: str) -> bytes:
    """An object in storage or on a web server (s3://, gs://, https://, file://, ...) through fsspec, with the
    same byte cap as files. Raises OSError (with a one-line strerror) or _FileTooLarge."""
    from .remote import read_url  # fsspec and its backends are imported only when a URL is read

    data, size = read_url(url, MAX_FILE_BYTES)
    if max(size or 0, len(data)) > MAX_FILE_BYTES:
        gib = 1024**3
        what = f"{size / gib:.1f} GiB" if size else f"over {MAX_FILE_BYTES / gib:g} GiB"
        raise _FileTooLarge(f"file too large ({what}, limit {MAX_FILE_BYTES / gib:g} GiB)")
    return data


def _hash_or_empty(path: str) -> str:
    if _is_url(path):
        return ""  # not worth reading a huge object a second time just to hash it
    try:
        return file_hash(path)
    except OSError:
        return ""


def _decode(data: bytes, spec: ImageSpec, max_pixels: int,
            draft: int | None = 1) -> tuple[np.ndarray, ImageInfo, Image.Image]:
    img = _open(data, max_pixels)
    full_size = img.size
    if draft:
        # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale in the DCT, never below `draft` x the model's input
        # on either side. With draft=1 a 12 MP photo decodes at 1/8 (500 x 375): 54 ms instead of 71 ms at 1/4
        # (draft=2). On the built-in model the median cosine to a full decode stays >= 0.9992, the worst photo
        # 0.990-0.994 (benchmarks/decode_quality.py prints it on real photos).
        img.draft("RGB", (draft * spec.size, draft * spec.size))
    _load(img)
    info = info_from(img, full_size, _format_name(img.format))
    img = _orient(img, info.orientation)
    return prepare_image(img, spec), info, img


_OPEN_FORMATS: tuple[str, ...] | None = None
_PIL_LIMIT_LOCK = threading.Lock()


def _open_formats() -> tuple[str, ...]:
    """The formats Image.open may try; registers pillow-heif's opener the first time."""
    global _OPEN_FORMATS
    if _OPEN_FORMATS is None:
        if _HAS_HEIF:
            _register_heif()
        Image.init()
        _OPEN_FORMATS = tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)
    return _OPEN_FORMATS


def _register_heif() -> None:
    try:
        import pillow_heif
    except Exception:  # noqa: BLE001 - a broken optional install only loses HEIC support
        return
    pillow_heif.register_heif_opener()
    if not PILLOW_AVIF and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open from memory (header only) and refuse what is not a photo or is too big to decode."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        img = _pil_open(data)
    except UnidentifiedImageError:
        raise ImageError(_not_an_image_reason(data)) from None
    except Exception as exc:  # noqa: BLE001 - SyntaxError, struct.error, EOFError, ValueError from bad headers
        fmt = _sniff(data) or "image"
        raise ImageError(f"corrupt or truncated {fmt} header ({_reason(exc)})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"image too large: {w}x{h} pixels (limit {max_pixels / 1e6:g} MP)")
    if w <= 0 or h <= 0:
        raise ImageError(f"invalid image size {w}x{h}")
    return img


def _pil_open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_open_formats())
    except Image.DecompressionBombError:
        pass
    # Pillow's own limit (2 x Image.MAX_IMAGE_PIXELS, ~179 MP) refused the header; ours (max_pixels) decides,
    # so read the header again without Pillow's limit: the caller checks the size before anything is decoded.
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data), formats=_open_formats())
        finally:
            Image.MAX_IMAGE_PIXELS = saved


# The most bytes handed to Pillow's decoder per call (its default is 64 KiB): the file is in memory already, and a
# 12 MP JPEG fed in one piece decodes 3 % faster than in 50 pieces (benchmarks/decode_cost.py), same pixels.
_DECODE_BLOCK = 64 << 20


def _load(img: Image.Image) -> None:
    """Decode the first frame; turn Pillow's many failure modes into one-line reasons."""
    fmt = _format_name(img.format)
    if isinstance(getattr(img, "decodermaxblock", None), int):
        img.decodermaxblock = max(img.decodermaxblock, _DECODE_BLOCK)
    try:
        img.load()
    except MemoryError:
        raise ImageError(f"out of memory decoding a {img.width}x{img.height} {fmt}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large ({_reason(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = _reason(exc)
        if re.search(r"truncated|broken data stream|premature end|no data", msg, re.IGNORECASE):
            raise ImageError(f"truncated {fmt}") from None
        raise ImageError(f"corrupt {fmt} ({msg})") from None


_TRANSPOSING = frozenset(range(2, 9))


def _orient(img: Image.Image, orientation: int | None) -> Image.Image:
    if orientation in _TRANSPOSING:
        return ImageOps.exif_transpose(img)  # also drops the tag, so read_info on the result stays right
    return img  # exif_transpose would copy the whole image even when there is nothing to do


@contextmanager
def _quiet() -> Iterator[None]:
    # Pillow warns about large images (DecompressionBombWarning, handled by max_pixels) and odd EXIF; a worker
    # has nowhere useful to print them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------------------ reasons

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"), (b"\x89PNG\r\n\x1a\n", 0, "PNG"), (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"), (b"WEBP", 8, "WEBP"), (b"II*\x00", 0, "TIFF"), (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "not an image (looks like a PDF document)"),
    (b"PK\x03\x04", "not an image (looks like a ZIP archive)"),
    (b"%!PS", "not an image (looks like PostScript)"),
    (b"\x1f\x8b", "not an image (looks like a gzip archive)"),
    (b"ID3", "not an image (looks like an MP3 file)"),
    (b"8BPS", "unsupported image format (Photoshop)"),
    (b"\x00\x00\x00\x0cjP  ", "unsupported image format (JPEG 2000)"),
    (b"\x00\x00\x01\x00", "unsupported image format (icon)"),
)


def _sniff(data: bytes) -> str | None:
    """The photo format the first bytes claim, or None."""
    for magic, offset, fmt in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return fmt
    if data[4:8] == b"ftyp":  # ISO-BMFF: major brand, then compatible brands, within the ftyp box
        brands = data[8:min(int.from_bytes(data[:4], "big"), 64)]
        if brands[:4] in (b"avif", b"avis") or (brands[:4] in (b"mif1", b"msf1") and b"avif" in brands):
            return "AVIF"
        if brands[:4] in _HEIF_BRANDS:
            return "HEIF"
    return None


def _not_an_image_reason(data: bytes) -> str:
    fmt = _sniff(data)
    if fmt == "HEIF" and not _HAS_HEIF:
        return "HEIC/HEIF image, but pillow-heif is not installed (pip install 'picseek[heif]')"
    if fmt == "AVIF" and not _HAS_AVIF:
        return "AVIF image, but this Pillow has no AVIF support"
    if fmt is not None:
        return f"corrupt or truncated {fmt} (cannot read its header)"
    for magic, reason in _OTHER_MAGIC:
        if data.startswith(magic):
            return reason
    if data[4:8] == b"ftyp":
        return "not an image (looks like a video)"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image (looks like HTML)"
    if head.startswith((b"<svg", b"<?xml")):
        svg = b"<svg" in head
        return "not a raster image (looks like SVG)" if svg else "not an image (looks like XML)"
    if _looks_like_text(data[:4096]):
        return "not an image (looks like text)"
    return "not an image (unrecognised data)"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a multi-byte character cut at the end of the sample is fine
            return False
        text = head[:exc.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\t\r\n\f" for c in text)
    return printable >= 0.95 * max(1, len(text))



def _os_reason(exc: BaseException) -> str:
    """"permission denied", not "[Errno 13] Permission denied: '/the/path/again'"."""
    strerror = getattr(exc, "strerror", None)
    return strerror.lower() if isinstance(strerror, str) and strerror else _reason(exc)


def _format_name(fmt: str | None) -> str:
    return _FORMAT_NAMES.get(fmt or "", fmt or "image")
