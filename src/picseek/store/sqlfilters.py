"""The built-in store's filters: each `--where` filter and each hard tag compiled to one parameterised SQL
condition over `images` (store/filters.py holds the language itself). Values are always SQL parameters, never
part of the SQL text."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..paths import to_text
from ..request import Filter
from .filters import (
    DATE,
    FOLDER,
    KINDS,
    OCR,
    TAG,
    TEXT,
    YES_NO,
    bad,
    builtin_key,
    check_text_op,
    field_compares_as_number,
    folder_prefixes,
    looks_like_date,
    no_contains_for_numbers,
    ocr_words,
    tag_value,
    unknown_key,
    value_range,
    yes_no,
)

_BASENAME = "substr(path, length(rtrim(path, replace(path, '/', ''))) + 1)"
_DIRNAME = "rtrim(path, replace(path, '/', ''))"
# key -> SQL expression over the images table (constants only)
EXPRESSIONS: dict[str, str] = {
    "taken": "(julianday(substr(taken_at, 1, 19)) - 2440587.5)",
    "width": "width", "height": "height", "size": "size", "id": "id", "orientation": "orientation",
    "gps_lat": "gps_lat", "gps_lon": "gps_lon",
    "camera": "trim(coalesce(camera_make, '') || ' ' || coalesce(camera_model, ''))",
    "make": "camera_make", "model": "camera_model", "lens": "lens", "format": "format", "path": "path",
    "name": _BASENAME, "folder": _DIRNAME, "tag": "tag",
}


@dataclass(frozen=True)
class IdQuery:
    """A SELECT of image ids; `exclude`: the condition holds for the images NOT in it."""

    sql: str
    params: tuple
    exclude: bool = False


@dataclass(frozen=True)
class Condition:
    """One condition two ways: a boolean SQL expression over `images` (for SQL that joins it, e.g. keyword
    search), and id sets that are all fetched alone (covering indexes) and combined in numpy: the image passes
    when it is in every include set and in no exclude set."""

    sql: str
    params: tuple
    ids: tuple[IdQuery, ...] = ()


EVERYTHING = Condition("1", ())


@dataclass
class FilterContext:
    """What compiling needs from the library: its indexed roots, and whether an imported field exists."""

    roots: Sequence[str]
    field_key: Callable[[str], str | None]  # the stored key for a name (exact, else case-insensitive), or None
    field_names: Callable[[], list[str]]  # every imported field name (for the unknown-key message)
    cwd: str = ""
    # the ocr_words MATCH expression for searched words (each within a few reading errors), None: one matches none
    text_match: Callable[[list[str]], str | None] = lambda words: None
    has_texts: bool = True  # the schema has the words read in images (a read-only older library may not)


def _compare(expr: str, op: str, lo: float, hi: float) -> tuple[str, tuple]:
    point = lo == hi
    if op in ("=", "!="):
        sql, params = (f"{expr} = ?", (lo,)) if point else (f"({expr} >= ? AND {expr} < ?)", (lo, hi))
    elif op == "<":
        sql, params = f"{expr} < ?", (lo,)
    elif op == "<=":
        sql, params = (f"{expr} <= ?", (lo,)) if point else (f"{expr} < ?", (hi,))
    elif op == ">":
        sql, params = (f"{expr} > ?", (lo,)) if point else (f"{expr} >= ?", (hi,))
    else:  # ">="
        sql, params = f"{expr} >= ?", (lo,)
    return sql, params


def _text_compare(expr: str, op: str, value: str) -> tuple[str, tuple]:
    if op == "~":
        return f"instr(lower({expr}), ?) > 0", (value.lower(),)
    return f"lower({expr}) = ?", (value.lower(),)


def _negate(sql: str, params: tuple, op: str) -> tuple[str, tuple]:
    """`!=` keeps images that lack the value altogether."""
    return (f"NOT coalesce({sql}, 0)", params) if op == "!=" else (sql, params)


def compile_filter(f: Filter, ctx: FilterContext) -> Condition:
    key = builtin_key(f)
    if key is None:
        stored = ctx.field_key(f.key)
        if stored is None:
            raise unknown_key(f, ctx.field_names())
        return _field(f, stored)
    kind = KINDS[key]
    if kind == FOLDER:
        return _folder(f, ctx)
    if kind == TAG:
        return _tag(f)
    if kind in (OCR, YES_NO) and not ctx.has_texts:
        raise bad(f, "this read-only library was written by an older picseek, without the words read in images")
    if kind == OCR:
        return _ocr_text(f, ctx)
    if kind == YES_NO:
        return _in_subquery("SELECT image_id FROM texts WHERE text != ''", (), not yes_no(f))
    return _column(f, kind, EXPRESSIONS[key])


def _on_images(sql: str, params: tuple) -> Condition:
    return Condition(sql, tuple(params), (IdQuery(f"SELECT id FROM images WHERE {sql}", tuple(params)),))


def _in_subquery(sub: str, params: tuple, exclude: bool) -> Condition:
    return Condition(f"id {'NOT IN' if exclude else 'IN'} ({sub})", tuple(params), (IdQuery(sub, tuple(params),
                                                                                            exclude),))


def _column(f: Filter, kind: str, expr: str) -> Condition:
    if kind == TEXT or (kind == DATE and f.op == "~"):
        check_text_op(f)
        text_expr = "taken_at" if kind == DATE else expr
        return _on_images(*_negate(*_text_compare(text_expr, f.op, f.value), f.op))
    no_contains_for_numbers(f)
    lo, hi = value_range(f, kind == DATE)
    return _on_images(*_negate(*_compare(expr, f.op, lo, hi), f.op))


def _field(f: Filter, key: str) -> Condition:
    if not field_compares_as_number(f):
        inner, params = _text_compare("value", "~" if f.op == "~" else "=", f.value)
    else:
        inner, params = _compare("num", "=" if f.op in ("=", "!=") else f.op,
                                 *value_range(f, looks_like_date(f.value)))
    return _in_subquery(f"SELECT image_id FROM fields WHERE key = ? AND {inner}", (key, *params), f.op == "!=")


def _tag(f: Filter) -> Condition:
    value = tag_value(f)
    inner, params = ("instr(tag, ?) > 0", (value,)) if f.op == "~" else ("tag = ?", (value,))
    return _in_subquery(f"SELECT image_id FROM tags WHERE {inner}", params, f.op == "!=")


def _ocr_text(f: Filter, ctx: FilterContext) -> Condition:
    match = ctx.text_match(ocr_words(f))
    if match is None:  # a word no image's text comes close to
        return EVERYTHING if f.op == "!=" else _on_images("0", ())
    return _in_subquery("SELECT rowid FROM ocr_words WHERE ocr_words MATCH ?", (match,), f.op == "!=")


def _folder(f: Filter, ctx: FilterContext) -> Condition:
    if f.op == "~":
        return _on_images(*_text_compare(EXPRESSIONS["folder"], "~", f.value))
    if f.op not in ("=", "!="):
        raise bad(f, "folder takes = (below this folder), != or ~ (contains)")
    parts, params = [], []
    for root in folder_prefixes(f.value, ctx.roots, ctx.cwd):
        prefix = to_text(root if root == "/" else root + "/")  # (paths as the store keeps them: paths.to_text)
        parts.append("(path >= ? AND path < ?)")  # every path below prefix sorts in [prefix, prefix[:-1] + "0")
        params += [prefix, prefix[:-1] + "0"]
    sql = "(" + " OR ".join(parts) + ")" if parts else "0"
    return _in_subquery(f"SELECT id FROM images WHERE {sql}", tuple(params), f.op == "!=")


def compile_filters(filters: Sequence[Filter], ctx: FilterContext) -> Condition:
    """Every filter must hold: one condition; `1` (and no id sets) when there are none."""
    return all_of([compile_filter(f, ctx) for f in filters])


def tag_condition(tags: Sequence[str], excluded: Sequence[str] = ()) -> Condition:
    """Images that carry every tag in `tags` and none in `excluded` (tags are stored lower-case)."""
    sub = "SELECT image_id FROM tags WHERE tag = ?"
    return all_of([_in_subquery(sub, (t,), False) for t in tags] + [_in_subquery(sub, (t,), True) for t in excluded])


def all_of(conds: Sequence[Condition]) -> Condition:
    conds = [c for c in conds if c.sql != "1"]
    if not conds:
        return EVERYTHING
    if len(conds) == 1:
        return conds[0]
    return Condition(" AND ".join(f"({c.sql})" for c in conds), tuple(p for c in conds for p in c.params),
                     tuple(q for c in conds for q in c.ids))
