"""Turn a parsed query into one vector and score the store's vectors against it (exact: one matrix product)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..ingest.fetch import fetch_bytes
from ..ingest.images import load_image
from ..models.base import MAIN, l2_normalize, prepare_image
from .parse import ID, IMAGE, TEXT, URL, Query, QueryError, QueryImageError, Term


@dataclass(frozen=True)
class SearchOptions:
    limit: int = 20
    threshold: float | None = None
    max_pixels: int = 250_000_000
    url_max_bytes: int = 50_000_000
    url_timeout: float = 15.0


def _term_image(term: Term, query: Query, opts: SearchOptions) -> Image.Image:
    try:
        if term.kind == URL:
            return load_image(fetch_bytes(term.value, opts.url_max_bytes, opts.url_timeout), opts.max_pixels)
        return load_image(term.value, opts.max_pixels)
    except QueryError:
        raise
    except ImageError as exc:
        raise QueryImageError(str(exc), query.text, term.pos if query.text else None) from exc


def query_space(query: Query, embedder, spaces: list[str]) -> str:
    """Example-image-only queries use the model's image space when the library has it; all else the main one."""
    if query.is_image_only and embedder.image_query_space in spaces:
        return embedder.image_query_space
    return MAIN


def embed_image(img: Image.Image, embedder, space: str) -> np.ndarray:
    return embedder.embed_pixels(prepare_image(img, embedder.image_spec)[None])[space][0]


def embed_query(query: Query, embedder, store, space: str, opts: SearchOptions) -> np.ndarray:
    """The weighted sum of the vector terms' unit vectors, normalised again (tags must be dealt with first)."""
    terms = query.vector_terms
    texts = [t.value for t in terms if t.kind == TEXT]
    text_vecs = iter(embedder.embed_texts(texts)) if texts else iter(())
    total = None
    for term in terms:
        if term.kind == TEXT:
            v = next(text_vecs)
        elif term.kind in (IMAGE, URL):
            v = embed_image(_term_image(term, query, opts), embedder, space)
        elif term.kind == ID:
            v = store.vector_of(int(term.value), space)
            if v is None:
                raise QueryError(f"id:{term.value} is not an indexed image", query.text,
                                 term.pos if query.text else None)
        else:  # pragma: no cover - tags never reach here
            raise QueryError(f"a {term.kind} term has no vector", query.text, term.pos)
        v = l2_normalize(v) * term.weight
        total = v if total is None else total + v
    if total is None:
        raise QueryError("nothing to search for: give words, an image or id:N", query.text, 0)
    if float(np.linalg.norm(total)) < 1e-6:
        raise QueryError("the terms cancel each other out", query.text, 0)
    return l2_normalize(total)


def score_rows(ids: np.ndarray, mat: np.ndarray, q: np.ndarray,
               mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, cosine scores) of the rows where `mask` is true (all rows when None). A selective filter multiplies
    only its rows; a broad one multiplies all and keeps its rows."""
    q = q.astype(np.float32)
    if mask is None or mat.size == 0:
        return ids, (mat @ q if mat.size else np.zeros(0, np.float32))
    rows = np.flatnonzero(mask)
    if len(rows) * 3 < len(ids):
        return ids[rows], mat[rows] @ q
    return ids[rows], (mat @ q)[rows]


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first (stable for ties)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return idx[np.argsort(-scores[idx], kind="stable")]


def top_k(ids: np.ndarray, mat: np.ndarray, q: np.ndarray, limit: int,
          threshold: float | None) -> list[tuple[int, float]]:
    if mat.size == 0 or limit <= 0:
        return []
    scores = mat @ q.astype(np.float32)
    out = [(int(ids[i]), float(scores[i])) for i in top_indices(scores, limit)]
    if threshold is not None:
        out = [(i, s) for i, s in out if s >= threshold]
    return out
