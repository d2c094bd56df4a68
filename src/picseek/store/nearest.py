"""The built-in store's vector ranking: exact (one matrix product over the allowed rows of the memory-mapped
vector table) or, for large spaces, through the approximate index (ann.py)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .base import Candidates
from .vectorcache import VectorTable

ANN_MIN_SHARE = 0.02  # a filter that allows less than this share of the rows is searched exactly (its rows only)
TYPICAL_SAMPLE = 20_000  # rows sampled for the mean score of a filtered approximate search


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first (stable for ties)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return idx[np.argsort(-scores[idx], kind="stable")]


def vector_candidates(folder: Path, space: str, table: VectorTable, q: np.ndarray,
                      mask_of: Callable[[np.ndarray], np.ndarray] | None, pool: int,
                      ann_threshold: int) -> Candidates:
    """The `pool` best allowed rows for the unit vector `q`. `mask_of(ids)`: which ids are allowed (None: all).
    With at least `ann_threshold` rows (0: never) and faiss installed, an unfiltered or broadly filtered search
    asks the approximate index; everything else multiplies the allowed rows exactly."""
    q = np.asarray(q, dtype=np.float32)
    mask = None if mask_of is None else mask_of(table.ids)
    allowed = table.rows if mask is None else int(np.count_nonzero(mask))

    def score_of(wanted: Sequence[int]) -> dict[int, float]:
        rows = table.rows_of_ids(np.asarray(list(wanted), dtype=np.int64)) if len(wanted) else np.zeros(0, int)
        rows = rows[rows >= 0]
        return dict(zip(table.ids[rows].tolist(), (table.vectors_of_rows(rows) @ q).tolist())) if len(rows) else {}

    large = 0 < ann_threshold <= table.rows
    if large and allowed and (mask is None or allowed >= ANN_MIN_SHARE * table.rows):
        from . import ann

        index = ann.index_for(folder, space, table)
        if index is not None:
            rows, scores = index.search(table, q, min(pool, allowed), mask)
            if len(rows) >= min(pool, allowed):
                return Candidates(table.ids[rows], scores, allowed, True, lambda: _typical(table, q, mask),
                                  score_of)
            # a filter that the probed cells hardly hold: the exact search of its rows below
    if mask is None:
        scores = table.dot(q) if table.rows else np.zeros(0, np.float32)
        ids = table.ids
    else:
        rows = np.flatnonzero(mask)
        if large or len(rows) * 3 < table.rows:
            scores = table.dot(q, rows) if len(rows) else np.zeros(0, np.float32)
        else:
            scores = table.dot(q)[rows]
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


def top_k(ids: np.ndarray, mat: np.ndarray, q: np.ndarray, limit: int,
          threshold: float | None) -> list[tuple[int, float]]:
    """(id, score) of the `limit` best rows of `mat` for `q`, at least `threshold` (a plain exact search)."""
    if mat.size == 0 or limit <= 0:
        return []
    scores = mat @ q.astype(np.float32)
    out = [(int(ids[i]), float(scores[i])) for i in top_indices(scores, limit)]
    if threshold is not None:
        out = [(i, s) for i, s in out if s >= threshold]
    return out
