"""The Python API: a Library is one folder that holds an index of images made by one model.

    lib = Library("~/picseek-library")          # or Library() for the default location
    report = lib.index(["~/Pictures"])
    hits = lib.search("a dog running on the beach", limit=10)
"""
from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from . import config
from .errors import LibraryError, ModelMismatchError, UsageError
from .ingest.pipeline import IndexReport, Progress, run_index
from .models import registry
from .query.parse import Query, Term, parse
from .query.search import SearchOptions, embed_image, embed_query, query_space, top_k
from .store.sqlite import SQLiteStore

log = logging.getLogger(__name__)
__all__ = ["Library", "Hit", "IndexReport", "Progress"]


@dataclass
class Hit:
    id: int
    path: str
    score: float
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Library:
    """An image library on disk. `model` is only needed for a new library: an existing one knows its model."""

    def __init__(self, path: str | os.PathLike | None = None, model=None, create: bool = True):
        """`model`: a name (see `picseek models`), or any object that implements the Embedder protocol."""
        self.path = config.library_path(path)
        self.store = SQLiteStore(self.path, create=create)
        self._model_arg = model
        self._embedder = None

    # -- model ----------------------------------------------------------------------------------------------------
    @property
    def recorded_model(self) -> dict | None:
        return self.store.get_model()

    def _check_same(self, embedder) -> None:
        rec = self.recorded_model
        if rec and rec["model_id"] != embedder.model_id:
            raise ModelMismatchError(
                f"library {self.path} was indexed with {rec['name']} ({rec['model_id']}), not "
                f"{embedder.model_id}: search it with --model {rec['name']}, or re-index with the new model "
                f"(picseek index --model {embedder.name} --rebuild FOLDER) or into another --library")

    def embedder(self):
        """The model this library uses: the recorded one, or for a new library the one asked for (default auto)."""
        if self._embedder is not None:
            return self._embedder
        rec = self.recorded_model
        asked = self._model_arg
        if asked is not None and not isinstance(asked, str):  # an Embedder object from the caller
            self._check_same(asked)
            self._embedder = asked
            return asked
        if rec:
            if asked not in (None, registry.AUTO, rec["name"]):
                spec = registry.resolve(asked)
                if spec.name != rec["name"]:
                    raise ModelMismatchError(
                        f"library {self.path} was indexed with {rec['name']}, not {spec.name}: leave out --model "
                        f"to use {rec['name']}, re-index with --rebuild, or use another --library")
            emb = registry.load_embedder(rec["name"])
            self._check_same(emb)
        else:
            emb = registry.load_embedder(config.get("model", asked))
        self._embedder = emb
        return emb

    def _record_model(self, emb) -> None:
        if not self.recorded_model:
            self.store.set_model({"name": emb.name, "model_id": emb.model_id, "dim": emb.dim,
                                  "spaces": dict(emb.spaces)})

    # -- indexing -------------------------------------------------------------------------------------------------
    def index(self, roots: Iterable[str | os.PathLike], *, workers: int | None = None,
              batch_size: int | None = None, retry_errors: bool = False, rebuild: bool = False,
              progress: Callable[[Progress], None] | None = None) -> IndexReport:
        """Add new and changed images below `roots`, follow moved ones, drop vanished ones. Safe to interrupt:
        the next call continues where this one stopped."""
        roots = list(roots)
        with self._index_lock():
            if rebuild:
                rec = self.recorded_model
                name = self._model_arg or (rec["name"] if rec else config.get("model"))
                self._embedder = name if not isinstance(name, str) else registry.load_embedder(name)
                self.store.clear_vectors()
            emb = self.embedder()
            self._record_model(emb)
            return run_index(self.store, emb, [os.fspath(r) for r in roots],
                             workers=config.get("workers", workers), batch_size=config.get("batch_size", batch_size),
                             retry_errors=retry_errors, max_pixels=config.get("max_image_pixels"),
                             progress=progress, skip=[str(self.path)])

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget the images at or below `paths` (which may no longer exist). Files on disk are never touched.
        Returns how many images left the library."""
        roots = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
        if not roots:
            raise UsageError("no path given to remove")
        with self._index_lock():
            return self.store.delete_under(roots)

    def _index_lock(self):
        return _FileLock(self.path / "index.lock")

    # -- search ---------------------------------------------------------------------------------------------------
    def search(self, query: str | os.PathLike | Image.Image | bytes | Query, *, limit: int = 20,
               threshold: float | None = None) -> list[Hit]:
        """Text, an image file, an http(s) image URL, `id:N`, a PIL image or image bytes -> best hits first."""
        if limit < 1:
            raise UsageError("limit must be at least 1")
        if self.store.count() == 0:
            raise LibraryError(f"library {self.path} has no images yet: run picseek index FOLDER first")
        emb = self.embedder()
        opts = SearchOptions(limit=limit, threshold=threshold, max_pixels=config.get("max_image_pixels"),
                             url_max_bytes=config.get("url_max_bytes"), url_timeout=config.get("url_timeout"))
        spaces = list(self.recorded_model.get("spaces", {"main": emb.dim}))
        if isinstance(query, (Image.Image, bytes)):
            from .ingest.images import load_image

            img = query if isinstance(query, Image.Image) else load_image(query, opts.max_pixels)
            space = query_space(Query((Term("image", "<image>"),)), emb, spaces)
            q = embed_image(img, emb, space)
        else:
            parsed = query if isinstance(query, Query) else parse(query)
            space = query_space(parsed, emb, spaces)
            q = embed_query(parsed, emb, self.store, space, opts)
        ids, mat = self.store.vectors(space)
        ranked = top_k(ids, mat, q, limit, threshold)
        rows = self.store.get_images([i for i, _ in ranked])
        return [Hit(i, rows[i]["path"], round(s, 6), rows[i]["width"], rows[i]["height"], rows[i]["taken_at"],
                    rows[i]["camera_make"], rows[i]["camera_model"]) for i, s in ranked if i in rows]

    # -- status ---------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        rec = self.recorded_model or {}
        return {"library": str(self.path), "model": rec.get("name"), "model_id": rec.get("model_id"),
                "dim": rec.get("dim"), "images": self.store.count(), "errors": self.store.error_count(),
                "disk_bytes": self.store.disk_bytes(), "last_run": self.store.last_run()}

    def errors(self, limit: int | None = None) -> list[dict]:
        return self.store.errors(limit)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _FileLock:
    """One index run per library at a time (readers are never blocked)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise LibraryError(f"another index run is using {self.path.parent}; wait for it to finish") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
