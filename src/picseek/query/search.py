"""Turn a parsed query into one vector and rank the store's vectors against it (exact: one matrix product)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..ingest.fetch import fetch_bytes
from ..ingest.images import load_image
from ..models.base import MAIN, l2_normalize, prepare_image
from .parse import ID, IMAGE, TEXT, URL, Query, Term


@dataclass(frozen=True)
class SearchOptions:
    limit: int = 20
    threshold: float | None = None
    max_pixels: int = 250_000_000
    url_max_bytes: int = 50_000_000
    url_timeout: float = 15.0


def _term_image(term: Term, opts: SearchOptions) -> Image.Image:
    if term.kind == URL:
        return load_image(fetch_bytes(term.value, opts.url_max_bytes, opts.url_timeout), opts.max_pixels)
    return load_image(term.value, opts.max_pixels)


def query_space(query: Query, embedder, spaces: list[str]) -> str:
    """Example-image-only queries use the model's image space when the library has it; all else the main one."""
    if query.is_image_only and embedder.image_query_space in spaces:
        return embedder.image_query_space
    return MAIN


def embed_image(img: Image.Image, embedder, space: str) -> np.ndarray:
    return embedder.embed_pixels(prepare_image(img, embedder.image_spec)[None])[space][0]


def embed_query(query: Query, embedder, store, space: str, opts: SearchOptions) -> np.ndarray:
    """The weighted sum of the terms' unit vectors, normalised again."""
    total = None
    for term in query.terms:
        if term.kind == TEXT:
            v = embedder.embed_texts([term.value])[0]
        elif term.kind in (IMAGE, URL):
            v = embed_image(_term_image(term, opts), embedder, space)
        elif term.kind == ID:
            v = store.vector_of(int(term.value), space)
            if v is None:
                raise UsageError(f"id:{term.value} is not an indexed image")
        else:  # pragma: no cover - the parser makes no other kinds
            raise UsageError(f"unknown query term {term.kind}")
        v = l2_normalize(v) * term.weight
        total = v if total is None else total + v
    return l2_normalize(total)


def top_k(ids: np.ndarray, mat: np.ndarray, q: np.ndarray, limit: int,
          threshold: float | None) -> list[tuple[int, float]]:
    if mat.size == 0 or limit <= 0:
        return []
    scores = mat @ q.astype(np.float32)
    k = min(limit, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    out = [(int(ids[i]), float(scores[i])) for i in idx]
    if threshold is not None:
        out = [(i, s) for i, s in out if s >= threshold]
    return out
