"""Structured filters (`--where KEY OP VALUE`), compiled to one parameterised SQL condition over `images`.

Keys: the image's own facts (taken, width, height, size, camera, make, model, lens, format, path, name, folder,
tag, id, gps_lat, gps_lon, orientation) or any imported field (the `fields` table). Operators: = != < <= > >= and
~ (contains, case-insensitive). Numbers and dates compare as numbers (fields through their numeric twin `num`); a
date may be a year, a month or a day (`taken=2021-06` is all of June; `taken<=2021-06` includes June). Values are
always SQL parameters, never part of the SQL text.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import PicseekError, UsageError
from ..ingest.paths import is_url
from ..paths import to_text
from ..store.values import field_number

OPS = ("<=", ">=", "!=", "~=", "=", "<", ">", "~")
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|!=|~=|=|<|>|~)\s*(.*?)\s*$", re.S)
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d")
_EPOCH = datetime(1970, 1, 1)

NUM, DATE, TEXT, FOLDER, TAG = "num", "date", "text", "folder", "tag"
_BASENAME = "substr(path, length(rtrim(path, replace(path, '/', ''))) + 1)"
_DIRNAME = "rtrim(path, replace(path, '/', ''))"
# key -> (kind, SQL expression over the images table; constants only)
KEYS: dict[str, tuple[str, str]] = {
    "taken": (DATE, "(julianday(substr(taken_at, 1, 19)) - 2440587.5)"),
    "width": (NUM, "width"), "height": (NUM, "height"), "size": (NUM, "size"), "id": (NUM, "id"),
    "orientation": (NUM, "orientation"), "gps_lat": (NUM, "gps_lat"), "gps_lon": (NUM, "gps_lon"),
    "camera": (TEXT, "trim(coalesce(camera_make, '') || ' ' || coalesce(camera_model, ''))"),
    "make": (TEXT, "camera_make"), "model": (TEXT, "camera_model"), "lens": (TEXT, "lens"),
    "format": (TEXT, "format"), "path": (TEXT, "path"), "name": (TEXT, _BASENAME),
    "folder": (FOLDER, _DIRNAME), "tag": (TAG, "tag"),
}
ALIASES = {"taken_at": "taken", "date": "taken", "camera_make": "make", "camera_model": "model",
           "filename": "name", "file": "name", "tags": "tag", "bytes": "size"}


class NoMatchError(PicseekError):
    """Filters (or tags) that no image in the library satisfies."""


@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    value: str
    raw: str


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


def parse_filter(text: str) -> Filter:
    """`KEY OP VALUE` -> Filter. The value may be quoted; `~=` means `~`."""
    m = _FILTER.match(str(text))
    if not m:
        raise UsageError(f"bad filter {text!r}: write KEY OP VALUE, e.g. taken>=2021-06-01, camera~canon, "
                         f"width>=1024 (operators: = != < <= > >= ~)")
    key, op, value = m.group(1), m.group(2), m.group(3)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if not value.strip():
        raise UsageError(f"bad filter {text!r}: no value after {op}")
    return Filter(key, "~" if op == "~=" else op, value, str(text).strip())


def parse_filters(items: Iterable[str | Filter]) -> list[Filter]:
    if isinstance(items, (str, Filter)):
        items = [items]
    return [f if isinstance(f, Filter) else parse_filter(f) for f in items]


# -- values ------------------------------------------------------------------------------------------------------
def _days(dt: datetime) -> float:
    return (dt - _EPOCH).total_seconds() / 86400.0


def date_range(value: str) -> tuple[float, float] | None:
    """A year, month or day -> [start, end) in days since 1970; a full date-time -> (t, t); else None."""
    m = _PARTIAL_DATE.match(value.strip())
    if m:
        year, month, day = int(m.group(1)), m.group(2), m.group(3)
        try:
            if day:
                start = datetime(year, int(month), int(day))
                return _days(start), _days(start) + 1.0
            if month:
                start = datetime(year, int(month), 1)
                end = datetime(year + (int(month) == 12), int(month) % 12 + 1, 1)
                return _days(start), _days(end)
            return _days(datetime(year, 1, 1)), _days(datetime(year + 1, 1, 1))
        except ValueError:
            return None
    num = field_number(value) if _DATE_TIME.match(value.strip()) else None
    return None if num is None else (num, num)


def _range_of(f: Filter, kind: str) -> tuple[float, float]:
    """The value as a [lo, hi) range (lo == hi: an exact number) for numeric comparison."""
    if kind == DATE or (kind == "field" and _PARTIAL_DATE.match(f.value.strip()) and "-" in f.value):
        rng = date_range(f.value)
        if rng is None:
            raise UsageError(f"bad filter {f.raw!r}: {f.value!r} is not a date (write 2021, 2021-06 or 2021-06-01)")
        return rng
    num = field_number(f.value)
    if num is None:
        raise UsageError(f"bad filter {f.raw!r}: {f.op} needs a number or a date, not {f.value!r}")
    return num, num


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


# -- one filter -> SQL -------------------------------------------------------------------------------------------
@dataclass
class FilterContext:
    """What compiling needs from the library: its indexed roots, and whether an imported field exists."""

    roots: Sequence[str]
    field_key: Callable[[str], str | None]  # the stored key for a name (exact, else case-insensitive), or None
    field_names: Callable[[], list[str]]  # every imported field name (for the unknown-key message)
    cwd: str = ""


def compile_filter(f: Filter, ctx: FilterContext) -> Condition:
    key = ALIASES.get(f.key.lower(), f.key.lower())
    if key in KEYS:
        kind, expr = KEYS[key]
        return {FOLDER: _folder, TAG: _tag}.get(kind, _column)(f, kind, expr, ctx)
    stored = ctx.field_key(f.key)
    if stored is None:
        known = ", ".join(sorted(set(KEYS) | set(ALIASES)))
        fields = ctx.field_names()
        raise UsageError(f"bad filter {f.raw!r}: unknown key {f.key!r}; use one of {known}"
                         + (f", or an imported field: {', '.join(fields[:30])}" if fields else
                            " (this library has no imported fields)"))
    return _field(f, stored)


def _on_images(sql: str, params: tuple) -> Condition:
    return Condition(sql, tuple(params), (IdQuery(f"SELECT id FROM images WHERE {sql}", tuple(params)),))


def _in_subquery(sub: str, params: tuple, exclude: bool) -> Condition:
    return Condition(f"id {'NOT IN' if exclude else 'IN'} ({sub})", tuple(params), (IdQuery(sub, tuple(params),
                                                                                            exclude),))


def _column(f: Filter, kind: str, expr: str, ctx: FilterContext) -> Condition:
    if kind == TEXT or (kind == DATE and f.op == "~"):
        if f.op not in ("=", "!=", "~"):
            raise UsageError(f"bad filter {f.raw!r}: {f.key} is text; use =, != or ~ (contains)")
        text_expr = "taken_at" if kind == DATE else expr
        return _on_images(*_negate(*_text_compare(text_expr, f.op, f.value), f.op))
    if f.op == "~":
        raise UsageError(f"bad filter {f.raw!r}: ~ (contains) is for text; {f.key} is a number")
    lo, hi = _range_of(f, kind)
    return _on_images(*_negate(*_compare(expr, f.op, lo, hi), f.op))


def _field(f: Filter, key: str) -> Condition:
    if f.op == "~":
        inner, params = _text_compare("value", "~", f.value)
    elif f.op in ("=", "!="):
        num = field_number(f.value)
        is_date = bool(_PARTIAL_DATE.match(f.value.strip())) and "-" in f.value
        if num is None and not is_date:
            inner, params = _text_compare("value", "=", f.value)
        else:
            inner, params = _compare("num", "=", *_range_of(f, "field"))
    else:
        inner, params = _compare("num", f.op, *_range_of(f, "field"))
    return _in_subquery(f"SELECT image_id FROM fields WHERE key = ? AND {inner}", (key, *params), f.op == "!=")


def _tag(f: Filter, kind: str, expr: str, ctx: FilterContext) -> Condition:
    if f.op not in ("=", "!=", "~"):
        raise UsageError(f"bad filter {f.raw!r}: tags take =, != or ~ (contains)")
    value = " ".join(f.value.split()).lower()
    inner, params = ("instr(tag, ?) > 0", (value,)) if f.op == "~" else ("tag = ?", (value,))
    return _in_subquery(f"SELECT image_id FROM tags WHERE {inner}", params, f.op == "!=")


def folder_prefixes(value: str, ctx: FilterContext) -> list[str]:
    """Absolute folders a `folder=` value names: an absolute or ~ path as is; ./ and ../ from the current
    folder; anything else below each indexed root."""
    v = value.strip()
    if is_url(v):  # a URL root in object storage (ingest/remote.py): as the store keeps it
        return [v.rstrip("/")]
    if v.startswith(("/", "~")):
        return [os.path.normpath(os.path.expanduser(v))]
    if v in (".", "..") or v.startswith(("./", "../")):
        return [os.path.normpath(os.path.join(ctx.cwd or os.getcwd(), v))]
    return [f"{root.rstrip('/')}/{v.strip('/')}" if is_url(root) else os.path.normpath(os.path.join(root, v))
            for root in ctx.roots]


def _folder(f: Filter, kind: str, expr: str, ctx: FilterContext) -> Condition:
    if f.op == "~":
        return _on_images(*_text_compare(expr, "~", f.value))
    if f.op not in ("=", "!="):
        raise UsageError(f"bad filter {f.raw!r}: folder takes = (below this folder), != or ~ (contains)")
    parts, params = [], []
    for root in folder_prefixes(f.value, ctx):
        prefix = to_text(root if root == "/" else root + "/")  # (paths as the store keeps them: paths.to_text)
        parts.append("(path >= ? AND path < ?)")  # every path below prefix sorts in [prefix, prefix[:-1] + "0")
        params += [prefix, prefix[:-1] + "0"]
    sql = "(" + " OR ".join(parts) + ")" if parts else "0"
    return _in_subquery(f"SELECT id FROM images WHERE {sql}", tuple(params), f.op == "!=")


def compile_filters(filters: Sequence[Filter], ctx: FilterContext) -> Condition:
    """Every filter must hold: one condition; `1` (and no id sets) when there are none."""
    conds = [compile_filter(f, ctx) for f in filters]
    return all_of(conds)


def tag_condition(tags: Sequence[str], excluded: Sequence[str] = ()) -> Condition:
    """Images that carry every tag in `tags` and none in `excluded` (tags are stored lower-case)."""
    sub = "SELECT image_id FROM tags WHERE tag = ?"
    return all_of([_in_subquery(sub, (t,), False) for t in tags] + [_in_subquery(sub, (t,), True) for t in excluded])


def all_of(conds: Sequence[Condition]) -> Condition:
    conds = [c for c in conds if c.sql != "1"]
    if not conds:
        return Condition("1", ())
    if len(conds) == 1:
        return conds[0]
    return Condition(" AND ".join(f"({c.sql})" for c in conds), tuple(p for c in conds for p in c.params),
                     tuple(q for c in conds for q in c.ids))
