"""Image roots in object storage and on web servers: s3://, gs://, https:// and any other fsspec URL.

A root that is a URL (other than file://, which is a local path) is listed with fsspec. Each object becomes a
`FileEntry` whose path is its full URL, whose size is the object's size and whose `mtime_ns` is a change marker
taken from the listing (see `change_marker`), so the scan's diff, moves and deletions work as for folders. Decode
workers read objects through `read_url` (a byte cap; every failure becomes an OSError with a one-line reason).

Credentials come from where each fsspec backend looks (AWS_* variables, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS,
...); `storage_options` adds keyword arguments for the backends for the length of an index run, in this process and
in its decode workers (through fsspec's own FSSPEC_<PROTOCOL> environment configuration).

fsspec is imported only when a URL is used: folders-only users do not need it.
"""
from __future__ import annotations

import copy
import datetime as dt
import email.utils
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from ..errors import StorageError, UsageError, one_line
from .paths import URL_PREFIX as _URL
from .paths import FileEntry, canonical_url, file_url_path, has_image_extension, is_remote, is_url, store_path
from .paths import fsspec_module as _fsspec
from .paths import url_scheme as _scheme

# (is_url, is_remote, file_url_path, canonical_url and store_path live in ingest/paths.py; kept importable from here)
__all__ = ["is_url", "is_remote", "file_url_path", "canonical_url", "store_path", "normalize_root", "filesystem",
           "list_entries", "object_info", "change_marker", "read_url", "open_url", "RemoteReadError", "translate",
           "parse_storage_options", "storage_options"]

log = logging.getLogger(__name__)

_reason = functools.partial(one_line, whole=True, named=True, limit=200)  # (an image's or a URL's reason)

# backend package and picseek extra that installs it, for the protocols people use most
_BACKENDS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
             "http": ("aiohttp", "cloud"), "https": ("aiohttp", "cloud"), "az": ("adlfs", None),
             "abfs": ("adlfs", None)}
_CREDENTIAL_HINTS = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials; "
          "--storage-option anon=true for a public bucket",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`; "
          "--storage-option token=anon for a public bucket",
}
# keys of a listing entry that change exactly when an object's content is replaced, most precise first
_VERSION_KEYS = ("generation", "ETag", "etag", "md5Hash", "Content-MD5", "content_md5")
_TIME_KEYS = ("LastModified", "last_modified", "Last-Modified", "updated", "mtime", "modified", "created")
_INFO_THREADS = 16


# ------------------------------------------------------------------------------------------ roots and listings


def normalize_root(url: str) -> str:
    """Check that the URL's backend is installed and its options are accepted (the filesystem object is made; the
    listing comes later, in `list_entries`), and return the URL's canonical form."""
    filesystem(url)
    return canonical_url(url)


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL; a missing backend or a bad option is a one-line error."""
    fsspec = _fsspec()
    scheme = _scheme(url)
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise UsageError(_missing_backend(scheme, exc)) from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise UsageError(f"unknown storage protocol {scheme}:// in {url}") from None
        raise UsageError(f"bad URL {url}: {_reason(exc)}") from None
    except TypeError as exc:
        raise UsageError(f"bad storage option for {scheme}://: {_reason(exc)}") from None


def list_entries(root: str) -> list[FileEntry]:
    """The image objects at or below a URL root, sorted by URL. A root that lists nothing at all is an error (an
    absent bucket or prefix cannot be told from an empty one, and must never read as "everything was deleted")."""
    fs, path = filesystem(root)
    fs.invalidate_cache()  # listings are cached per filesystem object: a run must see the store as it is now
    try:
        found = _find(fs, path)
    except Exception as exc:  # noqa: BLE001 - each backend raises its own types: translated to one line
        raise translate(exc, root, "list") from None
    base = canonical_url(root)
    urls = {}
    for name, info in found.items():
        url = _full_url(fs, name)
        if info.get("type") == "directory" or (url.rstrip("/") == base and not _is_image(url, base)):
            continue  # over HTTP any page that answers is "a file" too, a folder's index page included
        urls[url] = info
    if not urls:
        raise UsageError(f"nothing found at {root}: no such bucket, folder or object (or it is empty)")
    wanted = {u: info for u, info in urls.items() if _is_image(u, base)}
    _fill_missing_info(fs, wanted)
    return [FileEntry(u, int(info.get("size") or 0), change_marker(info)) for u, info in sorted(wanted.items())]


def object_info(url: str) -> dict | None:
    """One object's metadata as storage has it now (size, ETag/generation, ...; what a listing gives), or None when
    there is no such object. Other failures: one line (translate)."""
    fs, path = filesystem(url)
    fs.invalidate_cache()
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - each backend raises its own types: translated to one line
        if getattr(exc, "status", None) == 404:
            return None
        raise translate(exc, url, "read") from None
    return None if info.get("type") == "directory" else info


def _find(fs, path: str) -> dict[str, dict]:
    """fs.find with listing errors raised: the generic walk-based find omits folders it cannot list, which
    would turn a flaky folder into deleted images. Backends with their own find (s3fs, gcsfs) raise anyway."""
    fsspec = _fsspec()
    if isinstance(fs, fsspec.asyn.AsyncFileSystem):
        generic = type(fs)._find is fsspec.asyn.AsyncFileSystem._find
    else:
        generic = type(fs).find is fsspec.spec.AbstractFileSystem.find
    kwargs = {"on_error": "raise"} if generic else {}
    return fs.find(path, detail=True, **kwargs)


def _full_url(fs, name: str) -> str:
    return name if _URL.match(name) else fs.unstrip_protocol(name)


def _is_image(url: str, base: str) -> bool:
    """An image extension, and no hidden component (.name, ._name) below the root (a root that is one object:
    its name)."""
    rel = url[len(base):] if url.startswith(base.rstrip("/") + "/") else url.rstrip("/").rsplit("/", 1)[-1]
    if _scheme(url) in ("http", "https"):
        rel = unquote(rel.split("#", 1)[0].split("?", 1)[0])
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p.startswith(".") for p in parts):
        return False
    return has_image_extension(parts[-1])


def _fill_missing_info(fs, entries: dict[str, dict]) -> None:
    """Listings without sizes (HTTP index pages) get one metadata request (HEAD) per object, 16 at a time.
    An object whose metadata cannot be read keeps size 0 and marker 0: its read fails and is recorded."""
    todo = [u for u, info in entries.items() if info.get("size") is None]
    if not todo:
        return

    def info(url: str) -> tuple[str, dict | None]:
        try:
            return url, fs.info(url)
        except Exception as exc:  # noqa: BLE001 - recorded as this object's error when it is read
            log.warning("cannot read the metadata of %s: %s", url, _reason(exc))
            return url, None

    with ThreadPoolExecutor(min(_INFO_THREADS, len(todo))) as pool:
        for url, got in pool.map(info, todo):
            if got is not None:
                entries[url] = {**entries[url], **got}


def change_marker(info: Mapping[str, Any]) -> int:
    """What tells a changed object from an unchanged one (kept in the store's mtime_ns column): a 63-bit hash of
    the first version key the listing has (GCS generation, S3/HTTP ETag, Azure etag, MD5), else its modification
    time in ns (S3 LastModified, HTTP Last-Modified, GCS updated, mtime, created), else 0 (size only)."""
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            digest = hashlib.blake2b(f"{key}={value}".encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") >> 1
    for key in _TIME_KEYS:
        ns = _time_ns(info.get(key))
        if ns is not None:
            return ns
    return 0


def _time_ns(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value * 1_000_000) * 1000
    if isinstance(value, str):
        try:
            value = email.utils.parsedate_to_datetime(value) if value[:1].isalpha() else \
                dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except (TypeError, ValueError):
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1_000_000) * 1000
    return None


# ------------------------------------------------------------------------------------------ reading objects


def read_url(url: str, limit: int) -> tuple[bytes, int | None]:
    """(at most limit + 1 bytes of the object, its declared size or None). Nothing is read when the declared size
    is over the limit. Every failure is an OSError whose strerror is a one-line reason."""
    with open_url(url) as f:
        try:
            size = getattr(f, "size", None)
            size = size if isinstance(size, int) else None
            return (b"", size) if size is not None and size > limit else (f.read(limit + 1), size)
        except Exception as exc:  # noqa: BLE001 - backends raise their own types: one line for the error row
            raise RemoteReadError(_read_reason(exc, url)) from None


def open_url(url: str):
    """An object opened for reading (a binary file object with .size where known); RemoteReadError if it cannot be
    opened. Read errors later come from the backend."""
    try:
        fs, path = filesystem(url)
        return fs.open(path, "rb")
    except Exception as exc:  # noqa: BLE001 - backends raise their own types: one line
        raise RemoteReadError(_read_reason(exc, url)) from None


class RemoteReadError(OSError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.strerror = reason


def _read_reason(exc: BaseException, url: str) -> str:
    if isinstance(exc, UsageError):
        return str(exc)
    status = getattr(exc, "status", None)
    if isinstance(exc, FileNotFoundError) or status == 404:
        return "not found"
    if isinstance(exc, PermissionError) or status in (401, 403):
        return f"access denied ({_reason(exc)})"
    if _is_credentials(exc):
        return f"no credentials ({_reason(exc)})"
    return _reason(exc)


# ------------------------------------------------------------------------------------------ errors and options


def translate(exc: BaseException, url: str, doing: str) -> Exception:
    """A backend's exception -> one clear line (UsageError for what the user typed, StorageError otherwise)."""
    if isinstance(exc, (UsageError, StorageError)):
        return exc
    status = getattr(exc, "status", None)
    hint = _CREDENTIAL_HINTS.get({"s3a": "s3", "gcs": "gs"}.get(_scheme(url), _scheme(url)), "--storage-option")
    if isinstance(exc, FileNotFoundError) or status == 404:
        return UsageError(f"not found: {url} (no such bucket, folder or object)")
    if isinstance(exc, PermissionError) or status in (401, 403):
        return StorageError(f"access denied to {url} ({_reason(exc)}): check the credentials ({hint})")
    if _is_credentials(exc):
        return StorageError(f"no credentials for {url} ({_reason(exc)}): {hint}")
    return StorageError(f"cannot {doing} {url}: {_reason(exc)}")


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """["anon=true", "endpoint_url=http://minio:9000"] -> {"anon": True, "endpoint_url": "http://minio:9000"}:
    values are JSON where they parse as JSON (true, 3, {"a": 1}), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad storage option {pair!r}: use KEY=VALUE (e.g. endpoint_url=http://host:9000)")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@contextmanager
def storage_options(options: Mapping[str, Any] | None, roots: Iterable[str]) -> Iterator[None]:
    """Backend keyword arguments for the protocols of the URL roots, for the length of the block: in fsspec's
    configuration of this process and in FSSPEC_<PROTOCOL> for the decode workers it starts (process-wide)."""
    if not options:
        yield
        return
    schemes = sorted({_scheme(r) for r in roots if is_remote(str(r))})
    if not schemes:
        raise UsageError("storage options apply to URL roots (s3://, gs://, https://, ...); none was given")
    conf = _fsspec().config.conf
    saved_conf = {s: copy.deepcopy(conf.get(s)) for s in schemes}
    saved_env = {s: os.environ.get(_env_key(s)) for s in schemes}
    try:
        for s in schemes:
            conf.setdefault(s, {}).update(options)
            merged = {**json.loads(saved_env[s] or "{}"), **options}
            os.environ[_env_key(s)] = json.dumps(merged, default=str)
        yield
    finally:
        for s in schemes:
            if saved_conf[s] is None:
                conf.pop(s, None)
            else:
                conf[s] = saved_conf[s]
            if saved_env[s] is None:
                os.environ.pop(_env_key(s), None)
            else:
                os.environ[_env_key(s)] = saved_env[s]


def _env_key(scheme: str) -> str:
    return "FSSPEC_" + re.sub(r"[^A-Za-z0-9]", "_", scheme).upper()


def _missing_backend(scheme: str, exc: BaseException) -> str:
    package, extra = _BACKENDS.get(scheme, (None, None))
    if package and extra:
        return f"{scheme}:// needs the {package} package: pip install 'picseek[{extra}]' (or pip install {package})"
    if package:
        return f"{scheme}:// needs the {package} package: pip install {package}"
    return f"{scheme}:// needs a package that is not installed ({_reason(exc)})"


def _is_credentials(exc: BaseException) -> bool:
    return "credential" in type(exc).__name__.lower() or "credentials" in str(exc).lower()

