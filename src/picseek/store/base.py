"""The Store protocol: what indexing and search need from a place that keeps vectors and metadata."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from ..errors import UsageError
from ..request import Filter

# Image ids are positive 64-bit integers (SQLite's INTEGER PRIMARY KEY); a larger number names no image, and each
# edge (query parser, CLI, REST, Python API) refuses it with its own one-line error instead of an overflow.
MAX_ID = 2**63 - 1
# The image facts every store keeps (ingest/exif.ImageInfo's fields, in this order; a test keeps them equal).
INFO_COLUMNS = ("width", "height", "format", "taken_at", "camera_make", "camera_model", "lens", "gps_lat", "gps_lon",
                "orientation")


class FileState(NamedTuple):
    """What the store knows of one indexed file: enough to tell unchanged, changed and moved files apart (a
    tuple: a re-scan makes one per indexed file)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class TextRecord:
    """The words read in one image (OCR): all of them, and each line with its box and confidence (ingest/ocr.py's
    PageText.to_json: {"text", "box": 4 [x, y] corners as fractions of the oriented image, "score"}). An image the
    first pass let go, or where nothing was found, has an empty one; `error`: why reading failed. Either way it is
    recorded, so the image is not read again."""

    text: str
    lines: list = field(default_factory=list)
    error: str | None = None


@dataclass
class ImageRecord:
    """One image to write: file facts, image facts, a vector per space, and the words read in it (None: not read:
    a record it had is dropped, as it may describe the file before it changed)."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    info: dict  # width, height, format, taken_at, camera_make, camera_model, lens, gps_lat, gps_lon, orientation
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    text: TextRecord | None = None


@dataclass(frozen=True)
class Selection:
    """The images a search may return, compiled by one store from filters and hard tags. `everything`: no
    condition; `empty`: known to allow no image before any ranking; `native`: the store's own form of it."""

    everything: bool
    empty: bool = False
    native: object = None


@dataclass
class Candidates:
    """The best images of the vector ranking among the allowed ones."""

    ids: np.ndarray  # image ids, best first
    scores: np.ndarray
    allowed: int  # how many images the search could return (at least len(ids))
    approximate: bool
    typical: Callable[[], float]  # mean score over the allowed images (the background for the adaptive cut-off)
    score_of: Callable[[Sequence[int]], dict[int, float]]  # exact scores of other images (keyword hits)


@dataclass(frozen=True)
class Page:
    """One page of a browse: (image id, date) pairs, newest first, and the cursor of the next page (None: last)."""

    items: list[tuple[int, str | None]]
    next: str | None


def normalize_tag(text: object) -> str:
    """A tag as every store keeps and compares it: words separated by single spaces, lower case."""
    return " ".join(str(text).split()).lower()


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Tags as given by a user, normalized and without repeats; a UsageError when none is left or one is empty."""
    out = list(dict.fromkeys(normalize_tag(t) for t in tags))
    if not out or any(not t for t in out):
        raise UsageError("give at least one tag (empty tags are not allowed)")
    return out


def make_cursor(key: str, image_id: int) -> str:
    """The cursor of the page after the item (key, image id) of a browse."""
    return f"{key}|{int(image_id)}"


def parse_cursor(text: str) -> tuple[str, int]:
    key, sep, image_id = str(text).rpartition("|")
    if not sep or not key or not image_id.isdigit():
        raise UsageError(f"bad page cursor {text!r}: use the `next` value a page handed out")
    return key, int(image_id)


class Store(Protocol):
    """Everything indexing, search, tags, fields, keywords, browsing, status and merging need from a store.
    Every store implements all of it (tests/contract runs one suite on each); nothing outside store/ reaches
    past it (no SQL, no probing for optional methods)."""

    label: str  # "the built-in store" / "the ChromaDB store URL", for messages
    url: str  # "built-in" or the store URL
    database: Path | None  # a local database file whose errors are the library's disk errors (None: none)

    # -- the model --------------------------------------------------------------------------------------------
    def get_model(self) -> dict | None: ...
    def set_model(self, model: Mapping) -> None: ...
    def clear_vectors(self) -> None: ...

    # -- indexing ---------------------------------------------------------------------------------------------
    def file_states(self, roots: Sequence[str]) -> dict[str, FileState]: ...
    def known_errors(self, roots: Sequence[str]) -> dict[str, tuple[int, int]]: ...
    def write_images(self, records: Sequence[ImageRecord], errors: Sequence[tuple[str, int, int, str]]) -> None: ...
    def move(self, moves: Iterable[tuple[int, str, int, int]]) -> None: ...
    def delete_paths(self, paths: Iterable[str]) -> int: ...
    def delete_under(self, roots: Sequence[str]) -> int: ...
    def start_run(self, roots: Sequence[str]) -> int: ...
    def finish_run(self, run_id: int, status: str, stats: Mapping) -> None: ...
    def last_run(self) -> dict | None: ...
    def roots(self) -> list[str]: ...
    def prepare_search(self, spaces: Sequence[str], ann_threshold: int) -> None: ...

    # -- images and vectors -----------------------------------------------------------------------------------
    def spaces(self) -> list[str]: ...
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]: ...
    def vector_of(self, image_id: int, space: str) -> np.ndarray | None: ...
    def vectors_of(self, image_ids: Sequence[int], space: str) -> dict[int, np.ndarray]:
        """image id -> its float32 vector in `space`, for those of `image_ids` that have one (a batch in a few
        reads, where vector_of is one read per image)."""
        ...
    def get_images(self, ids: Sequence[int]) -> dict[int, dict]: ...
    def find_path(self, path: str) -> int | None: ...

    # -- words read in images (OCR) ---------------------------------------------------------------------------
    def write_texts(self, rows: Sequence[tuple[int, TextRecord]]) -> None: ...
    def get_texts(self, ids: Sequence[int]) -> dict[int, TextRecord]: ...
    def missing_texts(self, roots: Sequence[str]) -> list[FileState]: ...

    # -- imported fields and tags -----------------------------------------------------------------------------
    def set_fields(self, rows: Iterable[tuple[int, Mapping[str, object]]], source: str = "import") -> int: ...
    def get_fields(self, ids: Sequence[int]) -> dict[int, dict[str, str]]: ...
    def field_values(self, key: str) -> dict[int, str]: ...
    def field_keys(self) -> list[str]: ...
    def add_tags(self, rows: Iterable[tuple[int, str, str, float | None]]) -> int: ...
    def remove_tags(self, image_ids: Sequence[int], tags: Sequence[str]) -> int: ...
    def get_tags(self, ids: Sequence[int]) -> dict[int, list[dict]]: ...
    def replace_auto_tags(self, tags: Sequence[str], rows: Iterable[tuple[int, str, float]]) -> int: ...
    def tag_counts(self) -> dict[str, int]: ...

    # -- search: the query engine (query/engine.py) ranks through these -------------------------------------
    def select(self, where: Sequence[Filter], tags: Sequence[str], excluded_tags: Sequence[str],
               cwd: str) -> Selection: ...
    def nearest(self, space: str, vector: np.ndarray, k: int, selection: Selection,
                ann_threshold: int) -> Candidates: ...
    def keyword_ids(self, words: str, negative: str, selection: Selection, k: int, every: bool = False) -> list[int]:
        """The ids of the best `k` keyword matches among the images `selection` allows, best first: images whose
        searched text (file name and folder words, imported captions and descriptions, tags, the words read in the
        image, there also within a few reading errors: words.read_variants) holds any of `words` and none of
        `negative`. With `every`: only the images that hold every positive word (each in any searched column, or
        as one of that word's read variants), best `k` by the same ranking."""
        ...
    def explain_no_match(self, where: Sequence[Filter], tags: Sequence[str], excluded_tags: Sequence[str],
                         cwd: str) -> str: ...
    def browse(self, selection: Selection, limit: int, after: str | None = None) -> Page: ...

    # -- status -----------------------------------------------------------------------------------------------
    def count(self) -> int: ...
    def is_empty(self) -> bool: ...
    def errors(self, limit: int | None = None) -> list[dict]: ...
    def error_count(self) -> int: ...
    def disk_bytes(self) -> int: ...
    def close(self) -> None: ...


@contextmanager
def recorded_run(store, roots: Sequence[str], summary: Callable[[], dict]) -> Iterator[None]:
    """Record a run (index or merge) in the store's run log: "completed" when the body finishes, "interrupted" on
    Ctrl-C, "failed" on any other exception, each with `summary()` (called once, at the end, whatever happened)."""
    run_id = store.start_run(roots)
    status = "failed"
    try:
        yield
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        store.finish_run(run_id, status, summary())
