"""The Store protocol: what indexing and search need from a place that keeps vectors and metadata."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from ..errors import UsageError

# What a store may do beyond the protocol. The built-in store does all of it; another store lists what it does in
# its `features` (the ChromaDB store: none of these).
FEATURES = frozenset({"keywords", "tags", "fields"})
# Image ids are positive 64-bit integers (SQLite's INTEGER PRIMARY KEY); a larger number names no image, and each
# edge (query parser, CLI, REST, Python API) refuses it with its own one-line error instead of an overflow.
MAX_ID = 2**63 - 1


class FileState(NamedTuple):
    """What the store knows of one indexed file: enough to tell unchanged, changed and moved files apart (a
    tuple: a re-scan makes one per indexed file)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass
class ImageRecord:
    """One image to write: file facts, image facts, and a vector per space."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    info: dict  # width, height, format, taken_at, camera_make, camera_model, lens, gps_lat, gps_lon, orientation
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


class Store(Protocol):
    def get_model(self) -> dict | None: ...
    def set_model(self, model: Mapping) -> None: ...
    def file_states(self, roots: Sequence[str]) -> dict[str, FileState]: ...
    def known_errors(self, roots: Sequence[str]) -> dict[str, tuple[int, int]]: ...
    def write_images(self, records: Sequence[ImageRecord], errors: Sequence[tuple[str, int, int, str]]) -> None: ...
    def move(self, moves: Iterable[tuple[int, str, int, int]]) -> None: ...
    def delete_paths(self, paths: Iterable[str]) -> int: ...
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]: ...
    def get_images(self, ids: Sequence[int]) -> dict[int, dict]: ...
    def count(self) -> int: ...
    def is_empty(self) -> bool: ...


def require(store, feature: str, what: str) -> None:
    """A UsageError that names `what` when the store cannot do `feature` (one of FEATURES)."""
    if feature not in getattr(store, "features", FEATURES):
        label = getattr(store, "label", "this store")
        raise UsageError(f"{what}: not available with {label}; use the built-in store (leave out --store) for it")


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
