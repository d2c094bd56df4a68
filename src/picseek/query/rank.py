"""Ranking rules: reciprocal rank fusion of the vector and keyword rankings, which rankings found a hit (`via`),
the adaptive cut-off, date order."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..store.values import field_number

RRF_K = 60  # the usual constant of reciprocal rank fusion (Cormack et al. 2009)
ADAPTIVE_DEFAULT = 0.5  # the ratio `--adaptive` uses when given without a value
# What put a hit where it is (Hit.via): the vector ranking (of the query's terms, or of the words of hard tags when
# the query had nothing else to rank by), the keyword ranking, both (fused), or a re-ranking model.
VIA_VECTOR, VIA_KEYWORD, VIA_TAG, VIA_RERANK = "vector", "keyword", "tag", "rerank"


def fuse(vector_ids: Sequence[int], keyword_ids: Sequence[int], keyword_weight: float,
         k: int = RRF_K, every: Sequence[int] = ()) -> list[int]:
    """Reciprocal rank fusion: score(d) = 1 / (k + vector rank) + w / (k + keyword rank) [+ w / (k + rank among
    `every`: the keyword matches that hold every word of the query)]; ranks start at 1 and a list that lacks d adds
    nothing. Ties keep the vector order."""
    fused: dict[int, float] = {}
    for rank, i in enumerate(vector_ids, 1):
        fused[int(i)] = 1.0 / (k + rank)
    for ranking in (keyword_ids, every):
        for rank, i in enumerate(ranking, 1):
            fused[int(i)] = fused.get(int(i), 0.0) + keyword_weight / (k + rank)
    order = {int(i): n for n, i in enumerate(vector_ids)}
    return sorted(fused, key=lambda i: (-fused[i], order.get(i, len(order))))


def found_by(vector_ids: Sequence[int], keyword_ids: Sequence[int], vector: str = VIA_VECTOR) -> dict[int, str]:
    """Which of the rankings that `fuse` fused hold each id (Hit.via): `vector` (VIA_VECTOR, or VIA_TAG when the
    vector ranking was the words of hard tags), VIA_KEYWORD, or both ("vector+keyword", "tag+keyword")."""
    keyword = {int(i) for i in keyword_ids}
    via = {int(i): f"{vector}+{VIA_KEYWORD}" if int(i) in keyword else vector for i in vector_ids}
    return {**{i: VIA_KEYWORD for i in keyword}, **via}


def adaptive_cut(scores: np.ndarray, ratio: float, typical: float | None = None) -> float:
    """The lowest score kept by the adaptive cut-off: `ratio` of the way from the typical score of the candidates
    (their mean, or `typical` when the scores are only the best few: what an unrelated image scores) up to the
    best one. 0 keeps everything above average, 1 only the best; 0.5 drops the hits that are closer to the
    background than to the best hit."""
    if len(scores) == 0:
        return -np.inf
    best = float(np.max(scores))
    typical = float(np.mean(scores)) if typical is None else typical
    return typical + ratio * (best - typical)


def date_key(taken_at: str | None, newest_first: bool) -> tuple[int, float]:
    """Sort key: images with a date first (oldest or newest first), then those without."""
    num = field_number(taken_at) if taken_at else None
    if num is None:
        return (1, 0.0)
    return (0, -num if newest_first else num)
