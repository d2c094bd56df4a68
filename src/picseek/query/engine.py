"""One search, start to end: tags and filters -> allowed ids (SQL), query -> vector, the best allowed rows (exact
scores of the cached matrix, or the approximate index for large spaces), keyword ranking (FTS5), reciprocal rank
fusion, threshold and adaptive cut-off.

`Library.search` is the only caller (the CLI and the REST API go through it); it adds re-ranking, hits and sorting.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..store import fts
from .allowed import Allowed, allowed_ids
from .filters import (
    Condition,
    Filter,
    FilterContext,
    NoMatchError,
    all_of,
    compile_filter,
    compile_filters,
    parse_filters,
    tag_condition,
)
from .parse import ID, TAG, TEXT, Query, QueryError, Term
from .rank import ADAPTIVE_DEFAULT, adaptive_cut, fuse
from .search import SearchOptions, query_vector, vector_candidates

MIN_CANDIDATES = 100  # each ranking (vector, keyword) hands at least this many candidates to fusion
WIDE = 20  # with filters, keyword search first looks at this many times more unfiltered matches


@dataclass(frozen=True)
class Plan:
    """How to run one search (everything but the query)."""

    limit: int = 20
    threshold: float | None = None
    where: tuple[Filter, ...] = ()
    keyword_weight: float = 0.5  # 0: no keyword search
    soft_tags: bool = False
    adaptive: float | None = None
    candidates: int = 20  # how many ranked ids to return (>= limit; more when re-ranking follows)
    opts: SearchOptions = field(default_factory=SearchOptions)
    ann_threshold: int = 0  # spaces with at least this many vectors use the approximate index (0: always exact)


SORTS = ("score", "date", "newest")


def make_plan(*, limit: int, threshold: float | None, where, sort: str | None, keywords: bool | float,
              soft_tags: bool, rerank: str | None, rerank_top: int, adaptive: bool | float | None,
              opts: SearchOptions, default_keyword_weight: float, ann_threshold: int = 0) -> Plan:
    """Check the search options and turn them into a Plan (one UsageError per bad option)."""
    if limit < 1:
        raise UsageError("limit must be at least 1")
    if sort not in (None, *SORTS):
        raise UsageError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if rerank and rerank_top < 1:
        raise UsageError("rerank_top must be at least 1")
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"threshold must be a finite number (a cosine similarity, e.g. 0.25), not {threshold!r}")
    weight = default_keyword_weight if keywords is True else float(keywords or 0)
    if not (weight >= 0 and math.isfinite(weight)):
        raise UsageError(f"keyword weight must be a number >= 0, not {keywords!r}")
    ratio = ADAPTIVE_DEFAULT if adaptive is True else float(adaptive or 0) or None
    if ratio is not None and not 0 < ratio <= 1:
        raise UsageError(f"adaptive must be a ratio in (0, 1], not {adaptive!r}")
    return Plan(limit=limit, threshold=threshold, where=tuple(parse_filters(where)), keyword_weight=weight,
                soft_tags=soft_tags, adaptive=ratio, candidates=max(limit, rerank_top if rerank else 0), opts=opts,
                ann_threshold=max(0, int(ann_threshold)))


def filter_context(store) -> FilterContext:
    def field_key(name: str) -> str | None:
        if store.read("SELECT 1 FROM fields WHERE key = ? LIMIT 1", (name,)):
            return name
        row = store.read("SELECT key FROM fields WHERE key = ? COLLATE NOCASE LIMIT 1", (name,))
        return row[0][0] if row else None

    def field_names() -> list[str]:
        return [r[0] for r in store.read("SELECT DISTINCT key FROM fields ORDER BY key")]

    return FilterContext(roots=store.roots(), field_key=field_key, field_names=field_names, cwd=os.getcwd())


def _explain_no_match(store, ctx: FilterContext, where: tuple[Filter, ...], query: Query) -> str:
    """Which filter or tag matches nothing on its own (or that only their combination does)."""
    empty = []
    for f in where:
        c = compile_filter(f, ctx)
        if not store.read(f"SELECT 1 FROM images WHERE {c.sql} LIMIT 1", c.params):
            relative = f.key.lower() == "folder" and not f.value.strip().startswith(("/", "~", "."))
            hint = " (a relative folder is taken below the indexed folders)" if relative else ""
            empty.append(f"no image has {f.raw}{hint}")
    for tag in query.tags:
        if not store.read("SELECT 1 FROM tags WHERE tag = ? LIMIT 1", (tag,)):
            empty.append(f"no image is tagged {tag!r}")
    if empty:
        return "; ".join(empty)
    parts = [f.raw for f in where] + [f"tag:{t}" for t in query.tags] + [f"-tag:{t}" for t in query.excluded_tags]
    return f"no image matches all of {', '.join(parts)} together (each matches some images on its own)"


def _split_tags(query: Query, soft: bool) -> tuple[Query, Condition]:
    """The query to embed and the tag condition: soft tags become text terms; hard tags filter, and rank by
    their own words when the query has nothing else to rank by."""
    if soft:
        return query.with_soft_tags(), Condition("1", ())
    cond = tag_condition(query.tags, query.excluded_tags)
    vector_query = query.without_tags()
    if not any(t.weight > 0 for t in vector_query.vector_terms):
        as_text = tuple(Term(TEXT, t.value, t.weight, t.pos) for t in query.terms if t.kind == TAG and t.weight > 0)
        vector_query = Query(vector_query.terms + as_text, query.text)
    return vector_query, cond


def _check_ids(store, query: Query) -> None:
    for t in query.terms:
        if t.kind == ID and not store.get_images([int(t.value)]):
            raise QueryError(f"id:{t.value} is not an indexed image", query.text, t.pos if query.text else None)


def rank(store, get_embedder: Callable, spaces: list[str], query: Query, plan: Plan,
         image=None) -> list[tuple[int, float]]:
    """(image id, cosine score) best first: at most `plan.candidates` of them. `get_embedder()` gives the model
    (loaded only once the query and the filters are known to be good). `image`: a loaded PIL image that is the
    whole query (then `query` is empty)."""
    vector_query, tag_cond = _split_tags(query, plan.soft_tags)
    ctx = filter_context(store) if plan.where else None
    cond = all_of([compile_filters(plan.where, ctx) if ctx else Condition("1", ()), tag_cond])
    allowed = allowed_ids(store, cond)
    if allowed is not None and allowed.none_included:
        raise NoMatchError(_explain_no_match(store, ctx or filter_context(store), plan.where, query))
    _check_ids(store, vector_query)
    space, q = query_vector(vector_query, image, get_embedder(), store, spaces, plan.opts)
    pool = max(plan.candidates, MIN_CANDIDATES)
    found = vector_candidates(store, space, q, None if allowed is None else allowed.mask, pool, plan.ann_threshold)
    if found.allowed == 0 and allowed is not None:
        raise NoMatchError(_explain_no_match(store, ctx or filter_context(store), plan.where, query))
    score_of = dict(zip(found.ids.tolist(), found.scores.tolist()))
    order = found.ids.tolist()
    # Keywords join only text-only queries: with an example image the words modify a picture ("this, but at
    # night"), and a keyword hit would outrank much closer pictures (fusion favours items in both rankings).
    text_only = image is None and all(t.kind == TEXT for t in vector_query.terms)
    words = vector_query.words if text_only else ""
    if plan.keyword_weight > 0 and words:
        negative = " ".join(t.value for t in vector_query.terms if t.kind == TEXT and t.weight < 0)
        keyword_ids = _keyword_ids(store, fts.match_expression(words, negative), cond, allowed, pool)
        score_of.update(found.score_of([i for i in keyword_ids if i not in score_of]))
        keyword_ids = [i for i in keyword_ids if i in score_of]  # (an image without a vector in this space)
        order = fuse(order, keyword_ids, plan.keyword_weight)
    floor = -np.inf if plan.threshold is None else plan.threshold
    if plan.adaptive:
        floor = max(floor, adaptive_cut(found.scores, plan.adaptive, found.typical()))
    return [(i, score_of[i]) for i in order if score_of[i] >= floor][:plan.candidates]


def _keyword_ids(store, match: str | None, cond: Condition, allowed: Allowed | None, limit: int) -> list[int]:
    """The best `limit` keyword matches among the allowed images. With a condition, the unfiltered best
    WIDE x limit are filtered in numpy; only when that leaves too few does SQL apply the condition itself."""
    if match is None:
        return []
    if allowed is None:
        return store.read_ids(fts.keyword_sql("1"), (match, limit)).tolist()
    wide = limit * WIDE
    ids = store.read_ids(fts.keyword_sql("1"), (match, wide))
    kept = ids[allowed.mask(ids)] if len(ids) else ids
    if len(kept) >= limit or len(ids) < wide:
        return kept[:limit].tolist()
    return store.read_ids(fts.keyword_sql(cond.sql), (match, *cond.params, limit)).tolist()

