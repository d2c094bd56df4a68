"""Turn a parsed query into one vector and rank the store's vectors against it: exactly (one matrix product over
the allowed rows) or, for large spaces, through the approximate index (query/ann.py)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..ingest.fetch import fetch_bytes
from ..ingest.images import load_image
from ..models.base import MAIN, l2_normalize, prepare_image
from ..store.vectorcache import VectorTable
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
    scale = max(abs(t.weight) for t in terms) if terms else 1.0  # only ratios matter: 1e308:cat must not overflow
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
        v = l2_normalize(v) * (term.weight / scale)
        total = v if total is None else total + v
    if total is None:
        raise QueryError("nothing to search for: give words, an image or id:N", query.text, 0)
    if float(np.linalg.norm(total)) < 1e-6:
        raise QueryError("the terms cancel each other out", query.text, 0)
    return l2_normalize(total)


def query_vector(query: Query, image: Image.Image | None, embedder, store, spaces: list[str],
                 opts: SearchOptions) -> tuple[str, np.ndarray]:
    """The space to search and the unit query vector: of `image` where the whole query is one image, else of the
    query's terms. Every store's ranking starts here."""
    if image is not None:
        space = query_space(Query((Term(IMAGE, "<image>"),)), embedder, spaces)
        return space, embed_image(image, embedder, space)
    space = query_space(query, embedder, spaces)
    return space, embed_query(query, embedder, store, space, opts)


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


# -- the vector ranking: exact, or approximate for large spaces -----------------------------------------------------
ANN_MIN_SHARE = 0.02  # a filter that allows less than this share of the rows is searched exactly (its rows only)
TYPICAL_SAMPLE = 20_000  # rows sampled for the mean score of a filtered approximate search


@dataclass
class Candidates:
    """The best rows of the vector ranking among the allowed ones."""

    ids: np.ndarray  # image ids, best first
    scores: np.ndarray
    allowed: int  # how many rows the search could return
    approximate: bool
    typical: Callable[[], float]  # mean score over the allowed rows (the background for the adaptive cut-off)
    score_of: Callable[[Sequence[int]], dict[int, float]]  # exact scores of other images (keyword hits)


def _table(store, space: str) -> VectorTable:
    if _has_table(store):
        return store.vector_table(space)
    ids, mat = store.vectors(space)  # a store without a vector table: its float32 matrix as one
    return VectorTable(0, np.arange(len(ids), dtype=np.int64), ids, mat, -1, mat)


def _has_table(store) -> bool:
    return hasattr(store, "vector_table") and hasattr(store, "folder")


def vector_candidates(store, space: str, q: np.ndarray, mask_of: Callable[[np.ndarray], np.ndarray] | None,
                      pool: int, ann_threshold: int) -> Candidates:
    """The `pool` best allowed rows for the unit vector `q`. `mask_of(ids)`: which ids are allowed (None: all).
    With at least `ann_threshold` rows (0: never) and faiss installed, an unfiltered or broadly filtered search
    asks the approximate index (query/ann.py); everything else multiplies the allowed rows exactly."""
    q = np.asarray(q, dtype=np.float32)
    table = _table(store, space)
    mask = None if mask_of is None else mask_of(table.ids)
    allowed = table.rows if mask is None else int(np.count_nonzero(mask))

    def score_of(wanted: Sequence[int]) -> dict[int, float]:
        rows = table.rows_of_ids(np.asarray(list(wanted), dtype=np.int64)) if len(wanted) else np.zeros(0, int)
        rows = rows[rows >= 0]
        return dict(zip(table.ids[rows].tolist(), (table.vectors_of_rows(rows) @ q).tolist())) if len(rows) else {}

    large = 0 < ann_threshold <= table.rows and _has_table(store)  # (the index needs stable row seqs)
    if large and allowed and (mask is None or allowed >= ANN_MIN_SHARE * table.rows):
        from . import ann

        index = ann.index_for(store.folder, space, table)
        if index is not None:
            rows, scores = index.search(table, q, min(pool, allowed), mask)
            if len(rows) >= min(pool, allowed):
                return Candidates(table.ids[rows], scores, allowed, True, lambda: _typical(table, q, mask),
                                  score_of)
            # a filter that the probed cells hardly hold: the exact search of its rows below
    if mask is None:
        scores = table.float32() @ q if table.rows else np.zeros(0, np.float32)
        ids = table.ids
    else:
        rows = np.flatnonzero(mask)
        if large or len(rows) * 3 < table.rows:
            scores = table.vectors_of_rows(rows) @ q if len(rows) else np.zeros(0, np.float32)
        else:
            scores = (table.float32() @ q)[rows]
        ids = table.ids[rows]
    best = top_indices(scores, pool)
    mean = float(scores.mean()) if len(scores) else 0.0
    return Candidates(ids[best], scores[best], allowed, False, lambda: mean, score_of)


def _typical(table: VectorTable, q: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean score over the allowed rows, from a fixed sample of them."""
    rows = np.arange(table.rows) if mask is None else np.flatnonzero(mask)
    if len(rows) > TYPICAL_SAMPLE:
        rows = np.sort(np.random.default_rng(0).choice(rows, TYPICAL_SAMPLE, replace=False))
    return float((table.vectors_of_rows(rows) @ q).mean()) if len(rows) else 0.0
