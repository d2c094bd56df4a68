"""Download the images of a URL list into the library's cache folder, checked and resumable.

Each URL is fetched at most `concurrency` at a time (threads sharing one HTTP client), with a timeout, an
overall deadline, a size cap and a bounded number of redirects. 5xx, 408, 429, timeouts and connection errors
are retried with exponential backoff; other 4xx answers are not. A response must say it is an image (image/* or
application/octet-stream; HTML and other text are refused) and must decode with the indexing decoder before it
is kept. A kept file is written to a hidden temporary name and renamed into place (`<sha256(url)[:32]>.<ext>`),
so the cache never holds a partial file.

Errors are recorded in the store's errors table keyed by the URL (so `picseek status --errors` lists them),
with `mtime_ns` = PERMANENT (4xx, not an image, too large, does not decode) or TEMPORARY (still failing after
the retries). A rerun skips URLs already in the cache and URLs that failed permanently (unless retry_errors),
and tries temporary failures again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import config
from .._version import __version__
from ..errors import LibraryError, UsageError, one_line
from ..models.base import ImageSpec
from .images import DEFAULT_MAX_PIXELS, decode_file
from .metadata import KEY_COLUMNS, ImportReport
from .paths import DOWNLOADS
from .pipeline import IndexReport, Progress
from .sources import pick_column, read_rows

log = logging.getLogger(__name__)

FOLDER = DOWNLOADS
PERMANENT, TEMPORARY = 0, 1  # errors.mtime_ns of a URL's error row
URL_ROOTS = ("http:", "https:")  # every URL-keyed error row sorts below one of these
RETRY_STATUS = frozenset({408, 429})
IMAGE_TYPES = ("image/",)
BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/x-octet-stream"})
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
              "HEIF": ".heic", "AVIF": ".avif"}
_CHECK_SPEC = ImageSpec(size=32, resize="squash")  # a full decode at reduced size: cheap, and proves the file
_CHUNK = 64 * 1024
EXAMPLES = 20
# the usual names of a URL list's image column (a metadata import's url key), most likely first; Unsplash's
# photo_url is a web page, not the image
URL_COLUMNS = tuple(c for c in KEY_COLUMNS["url"] if c != "photo_url")


@dataclass(frozen=True)
class DownloadOptions:
    concurrency: int = config.default("download_concurrency")
    timeout: float = config.default("url_timeout")  # seconds to connect, and between two reads
    deadline: float | None = None  # seconds for a whole attempt (default: 10 x timeout)
    max_bytes: int = config.default("url_max_bytes")
    retries: int = 3  # further attempts after a temporary failure
    backoff: float = 0.5  # seconds before the first retry; doubles each time (with jitter)
    max_redirects: int = 5
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Fetched:
    url: str
    path: str | None = None
    error: str | None = None
    permanent: bool = True
    size: int = 0


@dataclass
class DownloadReport:
    urls: int = 0  # distinct URLs in the list
    downloaded: int = 0
    cached: int = 0  # in the cache folder from an earlier run
    skipped_errors: int = 0  # failed permanently before: not tried again (retry_errors to retry)
    errors: int = 0
    duplicates: int = 0
    no_url: int = 0  # rows with an empty URL cell
    bytes: int = 0
    seconds: float = 0.0
    error_samples: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class UrlIndexReport:
    """What `Library.index_urls` did: the downloads, the index run over the cache folder, the metadata import."""

    downloads: DownloadReport
    index: IndexReport
    metadata: ImportReport

    def as_dict(self) -> dict:
        return {"downloads": self.downloads.as_dict(), "index": self.index.as_dict(),
                "metadata": self.metadata.as_dict()}


class _Temporary(Exception):
    """Worth another try (5xx, 408, 429, timeout, connection error)."""


class _Refused(Exception):
    """Will fail the same way again (4xx, not an image, too large, does not decode)."""


def read_url_list(path: str | os.PathLike, url_column: str | None = None) -> tuple[list[dict], str]:
    """The rows of a URL list (txt, CSV, JSON, JSON Lines, Parquet) and the column that holds the URLs:
    `url_column`, else the first of url, photo_image_url, image_url, ... present, else the first column whose
    cells are http(s) URLs."""
    rows = list(read_rows(path))
    if not rows:
        raise UsageError(f"{path}: no rows")
    column = pick_column(rows, url_column, URL_COLUMNS, looks_right=lambda c: c.startswith(("http://", "https://")),
                         source=path, unknown="{source}: no column {asked!r}; its columns: {columns}",
                         not_found="{source}: no column of URLs found: name it with --url-column "
                                   "(columns: {columns})")
    return rows, column


def cache_name(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def download_urls(store, urls: Iterable[str], folder: str | os.PathLike, opts: DownloadOptions = DownloadOptions(),
                  *, retry_errors: bool = False,
                  progress: Callable[[Progress], None] | None = None) -> tuple[DownloadReport, dict[str, str]]:
    """Fetch every URL not yet in `folder`. Returns the report and url -> cached file for every URL that has
    one (downloaded now or before)."""
    t0 = time.perf_counter()
    notify = progress or (lambda p: None)
    folder = Path(folder)
    report, todo = DownloadReport(), []
    cached = _cached_files(folder)
    failed = store.known_errors(URL_ROOTS)
    paths: dict[str, str] = {}
    for url in _distinct(urls, report):
        hit = cached.get(cache_name(url))
        if hit is not None:
            paths[url] = hit
            report.cached += 1
        elif not retry_errors and failed.get(url, (0, TEMPORARY))[1] == PERMANENT:
            report.skipped_errors += 1
        else:
            todo.append(url)
    notify(Progress("download", 0, len(todo)))
    done = 0
    for batch in _fetch_all(todo, folder, opts):
        _record(store, batch, failed, report)
        for f in batch:
            if f.path:
                paths[f.url] = f.path
        done += len(batch)
        notify(Progress("download", done, len(todo), report.errors, batch[-1].url))
    report.seconds = time.perf_counter() - t0
    return report, paths


def _distinct(urls: Iterable[str], report: DownloadReport) -> list[str]:
    seen: dict[str, None] = {}
    for raw in urls:
        url = str(raw).strip() if raw is not None else ""
        if not url:
            report.no_url += 1
        elif url in seen:
            report.duplicates += 1
        else:
            seen[url] = None
    report.urls = len(seen)
    return list(seen)


def _cached_files(folder: Path) -> dict[str, str]:
    """cache name -> path of every finished download; leftover temporary files of a killed run are removed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise LibraryError(f"cannot use the download folder {folder}: {exc.strerror or exc}") from None
    out = {}
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(".part"):
            Path(e.path).unlink(missing_ok=True)
        elif not e.name.startswith(".") and e.is_file():
            out[os.path.splitext(e.name)[0]] = e.path
    return out


def _record(store, batch: Sequence[Fetched], failed: dict, report: DownloadReport) -> None:
    """Write a batch's errors (one transaction) and clear old error rows of URLs that now worked."""
    errors = [(f.url, f.size, PERMANENT if f.permanent else TEMPORARY, f.error) for f in batch if f.error]
    if errors:
        store.write_images([], errors)
    fixed = [f.url for f in batch if f.path and f.url in failed]
    if fixed:
        store.delete_paths(fixed)
    for f in batch:
        if f.error:
            report.errors += 1
            log.info("could not download %s: %s", f.url, f.error)
            if len(report.error_samples) < EXAMPLES:
                report.error_samples.append((f.url, f.error))
        else:
            report.downloaded += 1
            report.bytes += f.size


def _fetch_all(urls: list[str], folder: Path, opts: DownloadOptions, batch: int = 32):
    """Yield lists of Fetched as they finish, at most `concurrency` in flight."""
    import httpx

    if not urls:
        return
    limits = httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency)
    client = httpx.Client(timeout=httpx.Timeout(opts.timeout), follow_redirects=True, limits=limits,
                          max_redirects=opts.max_redirects, headers={"User-Agent": f"picseek/{__version__}"})
    pool = ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="picseek-download")
    pending: set[Future] = set()
    try:
        it = iter(urls)
        out: list[Fetched] = []
        while True:
            for url in it:
                pending.add(pool.submit(fetch_one, client, url, folder, opts))
                if len(pending) >= 2 * opts.concurrency:
                    break
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            out += [f.result() for f in finished]
            if len(out) >= batch or not pending:
                yield out
                out = []
    finally:
        # interrupted or failed: drop what has not started; running downloads end within their timeout
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()


def fetch_one(client, url: str, folder: Path, opts: DownloadOptions) -> Fetched:
    """One URL -> a checked file in `folder`, or the reason it has none. Never raises for a per-URL problem."""
    if not url.startswith(("http://", "https://")):
        return Fetched(url, error="not an http(s) URL")
    tries = opts.retries + 1
    for attempt in range(tries):
        try:
            return _attempt(client, url, folder, opts)
        except _Refused as exc:
            return Fetched(url, error=str(exc))
        except _Temporary as exc:
            if attempt + 1 == tries:
                return Fetched(url, error=f"{exc} (tried {tries} times)", permanent=False)
            time.sleep(opts.backoff * (2 ** attempt) * random.uniform(1.0, 1.25))
    raise AssertionError("unreachable")  # pragma: no cover


def _attempt(client, url: str, folder: Path, opts: DownloadOptions) -> Fetched:
    import httpx

    name = cache_name(url)
    tmp = folder / f".{name}.{threading.get_ident()}.part"
    try:
        with client.stream("GET", url) as resp:
            _check_response(resp, opts)
            size = _save(resp, tmp, opts)
    except httpx.TooManyRedirects:
        tmp.unlink(missing_ok=True)
        raise _Refused(f"more than {opts.max_redirects} redirects") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        tmp.unlink(missing_ok=True)
        raise _Refused(f"bad URL: {one_line(exc)}") from None
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        tmp.unlink(missing_ok=True)
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else f"connection failed ({one_line(exc)})"
        raise _Temporary(kind) from None
    except (_Refused, _Temporary):
        tmp.unlink(missing_ok=True)
        raise
    except httpx.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise _Refused(one_line(exc)) from None
    return _keep(url, tmp, folder / name, size, opts)


def _check_response(resp, opts: DownloadOptions) -> None:
    status = resp.status_code
    if status in RETRY_STATUS or status >= 500:
        raise _Temporary(f"HTTP {status}")
    if status >= 400:
        raise _Refused(f"HTTP {status}")
    if status != 200:
        raise _Refused(f"HTTP {status} (expected 200 with an image)")
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not (ctype.startswith(IMAGE_TYPES) or ctype in BINARY_TYPES):
        raise _Refused(f"not an image (content-type {ctype})")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > opts.max_bytes:
        raise _Refused(f"{int(declared)} bytes is over the {opts.max_bytes}-byte limit")


def _save(resp, tmp: Path, opts: DownloadOptions) -> int:
    """Stream the body to `tmp` within the size cap and the deadline; returns its size."""
    deadline = time.monotonic() + (opts.deadline or 10 * opts.timeout)
    total = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in resp.iter_bytes(_CHUNK):
                total += len(chunk)
                if total > opts.max_bytes:
                    raise _Refused(f"larger than the {opts.max_bytes}-byte limit")
                if time.monotonic() > deadline:
                    raise _Temporary("too slow (deadline passed)")
                f.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LibraryError(f"cannot write to the download folder {tmp.parent}: {exc.strerror or exc}") from None
    return total


def _keep(url: str, tmp: Path, final_stem: Path, size: int, opts: DownloadOptions) -> Fetched:
    """Decode-check the temporary file and rename it into place with the extension of its real format."""
    decoded = decode_file(str(tmp), _CHECK_SPEC, opts.max_pixels)
    if decoded.error is not None or decoded.info is None:
        tmp.unlink(missing_ok=True)
        raise _Refused(f"not a usable image: {decoded.error}")
    ext = EXTENSIONS.get(decoded.info.format or "")
    if ext is None:
        tmp.unlink(missing_ok=True)
        raise _Refused(f"unsupported image format {decoded.info.format}")
    final = final_stem.with_suffix(ext)
    os.replace(tmp, final)
    return Fetched(url, path=str(final), size=size)

