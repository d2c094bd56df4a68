"""What names an image to index, before anything is read: one copy of each rule the ingest modules share.

- `FileEntry`: one file or object found by a scan (its path as the store keeps it, its size, a change marker);
- `IMAGE_EXTENSIONS`: the file names worth decoding; `.heic`/`.heif` only where pillow-heif is importable, `.avif`
  only where Pillow has its AVIF module (Pillow >= 11.2) or pillow-heif is there;
- `is_url` / `is_remote`: `scheme://...`, and such a URL that is not a local file:// path;
- `store_path`: how a root or a path is spelled in the store (a canonical URL for a remote one, else an absolute
  local path).

A leaf: it imports only the standard library and picseek.errors, so scan.py, remote.py, images.py and the rest of
picseek can all use it without importing each other. fsspec (for `canonical_url`) is imported only when a remote
URL is spelled.
"""
from __future__ import annotations

import importlib.util
import os
import re
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from ..errors import UsageError

__all__ = ["FileEntry", "IMAGE_EXTENSIONS", "KNOWN_IMAGE_EXTENSIONS",
           "HEIF_SUPPORTED", "PILLOW_AVIF", "AVIF_SUPPORTED", "has_image_extension",
           "is_url", "is_remote", "url_scheme", "file_url_path", "canonical_url", "store_path", "fsspec_module"]


class FileEntry(NamedTuple):
    """One file or object found by a scan. `mtime_ns`: a file's modification time, or an object's change marker
    (ingest/remote.change_marker); a scan tells changed entries from unchanged ones by (size, mtime_ns)."""

    path: str
    size: int
    mtime_ns: int


# ------------------------------------------------------------------------------------------ image file names


def _importable(module: str) -> bool:
    """Whether `module` can be found, without importing it (a package's parent is imported to look inside it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


HEIF_SUPPORTED = _importable("pillow_heif")  # pillow-heif (pip install 'picseek[heif]') opens HEIC/HEIF
PILLOW_AVIF = _importable("PIL._avif")  # Pillow's own AVIF module (Pillow >= 11.2 wheels)
AVIF_SUPPORTED = HEIF_SUPPORTED or PILLOW_AVIF  # else pillow-heif's AVIF opener (ingest/images.py registers it)

_ALWAYS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")  # Pillow opens these itself
_HEIF = (".heic", ".heif")
_AVIF = (".avif",)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    _ALWAYS + (_HEIF if HEIF_SUPPORTED else ()) + (_AVIF if AVIF_SUPPORTED else ()))
# Every photo extension picseek knows, decodable here or not (what names an image file, e.g. in a query a server
# must not open).
KNOWN_IMAGE_EXTENSIONS: tuple[str, ...] = _ALWAYS + _HEIF + _AVIF
DOWNLOADS = "downloads"  # the folder of a library that holds the images downloaded from URL lists


def has_image_extension(name: str) -> bool:
    """Whether a file name (or path, or URL path) ends in one of IMAGE_EXTENSIONS, in any case."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# ------------------------------------------------------------------------------------------ URLs

URL_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def is_url(path: str | os.PathLike) -> bool:
    """True for `scheme://...` (file:// included); never for a PathLike or a local path that contains `://`."""
    return isinstance(path, str) and URL_PREFIX.match(path) is not None


def is_remote(path: str | os.PathLike) -> bool:
    """A URL that is not a local file:// path (s3://, gs://, https://, memory://, ...)."""
    return is_url(path) and not path.lower().startswith("file://")


def url_scheme(url: str) -> str:
    """The scheme of a URL in lower case ("" for what is not a URL)."""
    m = URL_PREFIX.match(url)
    return m.group(1).lower() if m else ""


def file_url_path(url: str) -> str:
    """file:///a/b%20c -> /a/b c (file://localhost/... too)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"file:// URLs name local files: {url} names host {parts.netloc!r}")
    return unquote(parts.path) or "/"


def canonical_url(url: str) -> str:
    """The form the store keeps: what fsspec's listings produce for the same place, without a trailing slash
    (s3://bucket/prefix/ -> s3://bucket/prefix, memory://x -> memory:///x). Needs no network."""
    scheme = url_scheme(url)
    try:
        cls = fsspec_module().get_filesystem_class(scheme)
    except (ImportError, ValueError):
        out = url
    else:
        protocols = cls.protocol if isinstance(cls.protocol, (tuple, list)) else (cls.protocol,)
        stripped = cls._strip_protocol(url)
        out = stripped if URL_PREFIX.match(stripped) else f"{protocols[0]}://{stripped}"
    rest = out.split("://", 1)[1]  # (not a URL test: what follows the scheme, to keep a bare "scheme://" whole)
    return out.rstrip("/") if rest.strip("/") else out


def store_path(path: str | os.PathLike) -> str:
    """The form a path takes in the store: a canonical URL for a remote root, else an absolute local path."""
    path = os.fspath(path)
    if is_remote(path):
        return canonical_url(path)
    return os.path.abspath(os.path.expanduser(file_url_path(path) if is_url(path) else path))


def fsspec_module():
    """fsspec, with the parts picseek uses imported; a one-line UsageError when it is not installed."""
    try:
        import fsspec
        import fsspec.asyn
        import fsspec.core
        import fsspec.spec
    except ImportError:
        raise UsageError("indexing URLs needs fsspec: pip install 'picseek[cloud]'") from None
    return fsspec
