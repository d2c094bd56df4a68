"""One search, start to end, for every store: the request checked and turned into a Plan; tags split from the
terms; the store's selection (filters and hard tags); the query vector; the store's best allowed images (exact
or approximate); keyword matches fused with them (reciprocal rank fusion); threshold and adaptive cut-off. Each
ranked id says which rankings put it there (`Ranked.via`: vector, keyword, both, or tag).

The stores answer through the Store protocol (store/base.py); nothing here knows how a store keeps its data.
`Library.search` is the only caller (the CLI and the REST API go through it); it adds re-ranking, hits and sorting.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import NoMatchError, UsageError
from ..request import ID, IN_TEXT, SORTS, TAG, TEXT, Filter, Query, SearchRequest, Term
from ..store.base import Store
from ..store.filters import parse_filters
from ..store.words import query_words
from .parse import QueryError
from .rank import ADAPTIVE_DEFAULT, VIA_TAG, VIA_VECTOR, adaptive_cut, found_by, fuse
from .search import SearchOptions, query_vector

MIN_CANDIDATES = 100  # each ranking (vector, keyword) hands at least this many candidates to fusion


@dataclass(frozen=True)
class Plan:
    """How to run one search (everything but the query)."""

    limit: int
    threshold: float | None
    where: tuple[Filter, ...]
    keyword_weight: float  # 0: no keyword search
    soft_tags: bool
    adaptive: float | None
    candidates: int  # how many ranked ids to return (>= limit; more when re-ranking follows)
    opts: SearchOptions
    ann_threshold: int  # spaces with at least this many vectors use the approximate index (0: always exact)


class Ranked(NamedTuple):
    """One ranked image: its id, its cosine score, and which rankings put it there (rank.found_by)."""

    id: int
    score: float
    via: str


def make_plan(req: SearchRequest, opts: SearchOptions, default_keyword_weight: float, ann_threshold: int) -> Plan:
    """Check the search options and turn them into a Plan (one UsageError per bad option)."""
    if req.limit < 1:
        raise UsageError("limit must be at least 1")
    if req.sort not in (None, *SORTS):
        raise UsageError(f"sort must be one of {', '.join(SORTS)}, not {req.sort!r}")
    if req.rerank and req.rerank_top < 1:
        raise UsageError("rerank_top must be at least 1")
    if req.threshold is not None and not math.isfinite(req.threshold):
        raise UsageError(f"threshold must be a finite number (a cosine similarity, e.g. 0.25), not {req.threshold!r}")
    weight = default_keyword_weight if req.keywords is True else float(req.keywords or 0)
    if not (weight >= 0 and math.isfinite(weight)):
        raise UsageError(f"keyword weight must be a number >= 0, not {req.keywords!r}")
    ratio = ADAPTIVE_DEFAULT if req.adaptive is True else float(req.adaptive or 0) or None
    if ratio is not None and not 0 < ratio <= 1:
        raise UsageError(f"adaptive must be a ratio in (0, 1], not {req.adaptive!r}")
    return Plan(limit=req.limit, threshold=req.threshold, where=tuple(parse_filters(req.where)),
                keyword_weight=weight, soft_tags=req.soft_tags, adaptive=ratio,
                candidates=max(req.limit, req.rerank_top if req.rerank else 0), opts=opts,
                ann_threshold=0 if req.exact else max(0, int(ann_threshold)))


def _split_tags(query: Query, soft: bool) -> tuple[Query, bool]:
    """The query to embed: soft tags become text terms; hard tags filter (the store's selection), and rank by
    their own words when the query has nothing else to rank by. Also whether they do (the vector ranking is then
    the tags' ranking: via "tag"). `text:` terms filter; they rank by their words when nothing else does."""
    query = _in_text_ranks(query)
    if soft:
        return query.with_soft_tags(), False
    vector_query = query.without_tags()
    if not any(t.weight > 0 for t in vector_query.vector_terms):
        tag_words = [Term(TEXT, t.value, t.weight, t.pos) for t in query.terms if t.kind == TAG and t.weight > 0]
        return vector_query.plus(*tag_words), bool(tag_words)
    return vector_query, False


def _in_text_ranks(query: Query) -> Query:
    """Without its `text:` terms, or, when nothing else would rank (no positive vector term or tag), with their
    words as text terms."""
    rest = query.without_in_text()
    if any(t.weight > 0 and t.kind != IN_TEXT for t in query.terms):
        return rest
    return rest.plus(*(Term(TEXT, t.value, t.weight, t.pos) for t in query.terms if t.kind == IN_TEXT and t.weight > 0))


def in_text_filters(query: Query) -> tuple[Filter, ...]:
    """The `text:` terms as the filters they are (`text~WORDS`, `text!=WORDS` for -text:)."""
    return tuple(Filter("text", "~" if shown else "!=", words, f'{"" if shown else "-"}text:"{words}"')
                 for words, shown in query.in_text)


def _check_ids(store: Store, query: Query) -> None:
    for t in query.terms:
        if t.kind == ID and not store.get_images([int(t.value)]):
            raise QueryError(f"id:{t.value} is not an indexed image", query.text, t.pos if query.text else None)


def rank(store: Store, get_embedder: Callable, spaces: list[str], query: Query, plan: Plan) -> list[Ranked]:
    """(image id, cosine score, via) best first: at most `plan.candidates` of them. `get_embedder()` gives the
    model (loaded only once the query and the filters are known to be good)."""
    cwd = os.getcwd()
    tags, excluded = ((), ()) if plan.soft_tags else (query.tags, query.excluded_tags)
    vector_query, by_tags = _split_tags(query, plan.soft_tags)
    where = plan.where + in_text_filters(query)
    selection = store.select(where, tags, excluded, cwd)

    def no_match() -> NoMatchError:
        return NoMatchError(store.explain_no_match(where, tags, excluded, cwd))

    if selection.empty:
        raise no_match()
    _check_ids(store, vector_query)
    space, q = query_vector(vector_query, get_embedder(), store, spaces, plan.opts)
    pool = max(plan.candidates, MIN_CANDIDATES)
    found = store.nearest(space, q, pool, selection, plan.ann_threshold)
    if found.allowed == 0 and not selection.everything:
        raise no_match()
    vector_ids = found.ids.tolist()
    score_of = dict(zip(vector_ids, found.scores.tolist()))
    order, keyword_ids = vector_ids, []
    # Keywords join only text-only queries: with an example image the words modify a picture ("this, but at
    # night"), and a keyword hit would outrank much closer pictures (fusion favours items in both rankings).
    text_only = all(t.kind == TEXT for t in vector_query.terms)
    if plan.keyword_weight > 0 and text_only and vector_query.words:
        keyword_ids = store.keyword_ids(vector_query.words, vector_query.negative_words, selection, pool)
        score_of.update(found.score_of([i for i in keyword_ids if i not in score_of]))
        keyword_ids = [i for i in keyword_ids if i in score_of]  # (an image without a vector in this space)
        order = fuse(order, keyword_ids, plan.keyword_weight,
                     every=_holding_every_word(store, vector_query, selection, pool, keyword_ids))
    floor = -np.inf if plan.threshold is None else plan.threshold
    if plan.adaptive:
        floor = max(floor, adaptive_cut(found.scores, plan.adaptive, found.typical()))
    via = found_by(vector_ids, keyword_ids, VIA_TAG if by_tags else VIA_VECTOR)
    return [Ranked(i, score_of[i], via[i]) for i in order if score_of[i] >= floor][:plan.candidates]


def _holding_every_word(store: Store, query: Query, selection, pool: int, keyword_ids: list[int]) -> list[int]:
    """Of the keyword matches of a query of several words, those that hold every one of them (each in any searched
    column: a file name, a caption, tags, the words read in the image with their OCR-error-tolerant variants), in
    keyword order. Fusion counts them once more: a match on one word of "quarterly revenue" must not outrank the
    slide that shows both because its picture is closer (benchmarks/ocr.py's retrieval). One store call
    (keyword_ids with `every`); an image outside the best `pool` of those holding every word counts as not
    holding them."""
    words, _ = query_words(query.words)
    if len(words) < 2 or not keyword_ids:
        return []
    holding = set(store.keyword_ids(query.words, query.negative_words, selection, pool, every=True))
    return [i for i in keyword_ids if i in holding]
