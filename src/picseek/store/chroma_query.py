"""Search in the ChromaDB store: the `--where` filters ChromaDB can answer, compiled to its `where` (metadata) and
`where_document` (the filter document of chroma_records.py) conditions, and one ranking: the nearest neighbours
in ChromaDB's index among the images that pass.

Supported: numbers (width, height, size, id, orientation, gps_lat, gps_lon) and dates (taken, partial dates as in
the built-in store) with = != < <= > >=; text (camera, make, model, lens, format, path, name, taken) with =, !=
and ~ (case-insensitive, as in the built-in store); folder with =, != and ~. Refused with a UsageError: tag
filters and imported fields (this store keeps neither), hard `tag:` terms, --adaptive, keyword fusion.
`!=` keeps images that lack the value, as in the built-in store.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from ..errors import UsageError
from ..query.filters import (
    ALIASES,
    DATE,
    FOLDER,
    KEYS,
    TAG,
    Filter,
    FilterContext,
    NoMatchError,
    date_range,
    folder_prefixes,
)
from ..query.parse import ID, Query, QueryError
from ..query.search import query_vector
from .values import field_number

NUMBER_KEYS = {"width": "width", "height": "height", "size": "size", "id": "pid", "orientation": "orientation",
               "gps_lat": "gps_lat", "gps_lon": "gps_lon"}
_OPS = {"=": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")
NOTHING = {"pid": {"$lt": 0}}  # a condition no image passes


def _escape(text: str) -> str:
    """A literal for ChromaDB's regular expressions (the same set of characters its regex engine escapes)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def _bad(f: Filter, why: str) -> UsageError:
    return UsageError(f"bad filter {f.raw!r}: {why}")


def _refused(f: Filter, what: str) -> UsageError:
    return UsageError(f"filter {f.raw!r}: {what} not available with the ChromaDB store; use the built-in store "
                      "(leave out --store) for it")


def compile_filter(f: Filter, roots: Sequence[str], cwd: str = "") -> tuple[dict | None, dict | None]:
    """One filter -> (where, where_document); either may be None."""
    key = ALIASES.get(f.key.lower(), f.key.lower())
    if key not in KEYS:
        known = ", ".join(sorted(set(KEYS) - {"tag"}))
        raise UsageError(f"bad filter {f.raw!r}: unknown key {f.key!r}; use one of {known} (imported fields are "
                         "not available with the ChromaDB store; use the built-in store (leave out --store) for them)")
    kind = KEYS[key][0]
    if kind == TAG:
        raise _refused(f, "tag filters are")
    if kind == FOLDER:
        return _folder(f, roots, cwd)
    if kind == DATE and f.op == "~":
        return None, _text(f, "taken")
    if kind == DATE:
        return _date(f), None
    if key in NUMBER_KEYS:
        return _number(f, NUMBER_KEYS[key]), None
    if f.op not in ("=", "!=", "~"):
        raise _bad(f, f"{f.key} is text; use =, != or ~ (contains)")
    return None, _text(f, key)


def _text(f: Filter, line: str) -> dict:
    value = _escape(f.value.lower())
    if f.op == "~":
        return {"$regex": f"(?m)^{line}:.*{value}"}
    whole = f"(?m)^{line}:{value}$"
    return {"$not_regex": whole} if f.op == "!=" else {"$regex": whole}


def _number(f: Filter, meta_key: str) -> dict:
    if f.op == "~":
        raise _bad(f, f"~ (contains) is for text; {f.key} is a number")
    num = field_number(f.value)
    if num is None:
        raise _bad(f, f"{f.op} needs a number or a date, not {f.value!r}")
    return {meta_key: {_OPS[f.op]: int(num) if num.is_integer() else num}}


def _date(f: Filter) -> dict:
    value = f.value.strip()
    rng = date_range(value)
    if rng is None:
        raise _bad(f, f"{f.value!r} is not a date (write 2021, 2021-06 or 2021-06-01)")
    lo, hi = rng
    m = _PARTIAL_DATE.match(value)
    if m is None:  # a full date-time: one point in time
        return {"taken_days": {_OPS[f.op]: lo}}
    if f.op in ("=", "!="):  # a whole year, month or day: one key, so != keeps images without a date
        year, month, day = m.groups()
        key, number = ("taken_d", int(lo)) if day else ("taken_m", int(year) * 100 + int(month)) if month else \
            ("taken_y", int(year))
        return {key: {_OPS[f.op]: number}}
    bound = {"<": ("$lt", lo), "<=": ("$lt", hi), ">": ("$gte", hi), ">=": ("$gte", lo)}[f.op]
    return {"taken_days": {bound[0]: bound[1]}}


def _folder(f: Filter, roots: Sequence[str], cwd: str) -> tuple[dict | None, dict | None]:
    if f.op == "~":
        return None, _text(f, "folder")
    if f.op not in ("=", "!="):
        raise _bad(f, "folder takes = (below this folder), != or ~ (contains)")
    ctx = FilterContext(roots=roots, field_key=lambda name: None, field_names=list, cwd=cwd)
    prefixes = list(dict.fromkeys(folder_prefixes(f.value, ctx)))
    if not prefixes:
        return (NOTHING if f.op == "=" else None), None
    op = "$contains" if f.op == "=" else "$not_contains"
    return _join("$or" if f.op == "=" else "$and", [{"dirs": {op: p}} for p in prefixes]), None


def _join(op: str, conds: list) -> dict | None:
    conds = [c for c in conds if c]
    return None if not conds else conds[0] if len(conds) == 1 else {op: conds}


def compile_filters(filters: Sequence[Filter], roots: Sequence[str], cwd: str = "") -> tuple[dict | None, dict | None]:
    """Every filter must hold: (where, where_document) for ChromaDB, None where there is no condition."""
    parts = [compile_filter(f, roots, cwd) for f in filters]
    return _join("$and", [w for w, _ in parts]), _join("$and", [d for _, d in parts])


# -- one search ---------------------------------------------------------------------------------------------------
def _explain_no_match(store, filters: Sequence[Filter], roots: Sequence[str]) -> str:
    empty = []
    for f in filters:
        if not store.any_match(*compile_filter(f, roots, os.getcwd())):
            relative = f.key.lower() == "folder" and not f.value.strip().startswith(("/", "~", "."))
            empty.append(f"no image has {f.raw}" + (" (a relative folder is taken below the indexed folders)"
                                                   if relative else ""))
    if empty:
        return "; ".join(empty)
    return f"no image matches all of {', '.join(f.raw for f in filters)} together (each matches some images on its own)"


def rank(store, get_embedder: Callable, spaces: list[str], query: Query, plan, image=None) -> list[tuple[int, float]]:
    """(image id, cosine score) best first, at most `plan.candidates`: what query/engine.rank gives for the built-in
    store, computed by ChromaDB (approximate nearest neighbours, filters applied inside ChromaDB)."""
    if plan.adaptive:
        store.refuse("--adaptive (it compares every image's score)")
    if (query.tags or query.excluded_tags) and not plan.soft_tags:
        store.refuse("tag: terms (this store keeps no tags; --soft-tags ranks by them as words)")
    vector_query = query.with_soft_tags() if plan.soft_tags else query
    roots = store.roots() if plan.where else []
    where, where_document = compile_filters(plan.where, roots, os.getcwd())
    for t in vector_query.terms:
        if t.kind == ID and not store.get_images([int(t.value)]):
            raise QueryError(f"id:{t.value} is not an indexed image", query.text, t.pos if query.text else None)
    space, q = query_vector(vector_query, image, get_embedder(), store, spaces, plan.opts)
    ids, scores = store.query(space, q, plan.candidates, where, where_document)
    if not ids and (where or where_document):
        raise NoMatchError(_explain_no_match(store, plan.where, roots))
    floor = float("-inf") if plan.threshold is None else plan.threshold
    return [(i, s) for i, s in zip(ids, scores) if s >= floor]
