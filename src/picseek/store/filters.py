"""The filter language (`--where KEY OP VALUE`) as every store reads it: the keys and their kinds, the operators,
how values read as numbers, dates and folders, and the messages for bad filters. Each store compiles filters its
own way (sqlfilters.py: SQL for the built-in store; chroma_search.py: ChromaDB's where clauses) from these rules.

Keys: the image's own facts (taken, width, height, size, camera, make, model, lens, format, path, name, folder,
tag, id, gps_lat, gps_lon, orientation), the words read in it (`text~WORDS`: every word is there, within a few
reading errors; `has_text=yes|no`: any words read at all; libraries indexed with --ocr) or any imported field.
Operators: = != < <= > >= and ~ (contains, case-insensitive). Numbers and dates compare as numbers; a date may be
a year, a month or a day (`taken=2021-06` is all of June; `taken<=2021-06` includes June). `!=` keeps images that
lack the value altogether.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from ..errors import FilterError
from ..ingest.paths import is_url
from ..request import Filter
from .base import normalize_tag
from .values import field_number
from .words import text_words

OPS = ("<=", ">=", "!=", "~=", "=", "<", ">", "~")
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|!=|~=|=|<|>|~)\s*(.*?)\s*$", re.S)
PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d")
_EPOCH = datetime(1970, 1, 1)

NUM, DATE, TEXT, FOLDER, TAG, OCR, YES_NO = "num", "date", "text", "folder", "tag", "ocr", "yes_no"
KINDS: dict[str, str] = {
    "taken": DATE, "width": NUM, "height": NUM, "size": NUM, "id": NUM, "orientation": NUM, "gps_lat": NUM,
    "gps_lon": NUM, "camera": TEXT, "make": TEXT, "model": TEXT, "lens": TEXT, "format": TEXT, "path": TEXT,
    "name": TEXT, "folder": FOLDER, "tag": TAG, "text": OCR, "has_text": YES_NO,
}
ALIASES = {"taken_at": "taken", "date": "taken", "camera_make": "make", "camera_model": "model",
           "filename": "name", "file": "name", "tags": "tag", "bytes": "size", "ocr": "text"}
_YES, _NO = ("yes", "true", "1", "y"), ("no", "false", "0", "n")


def parse_filter(text: str) -> Filter:
    """`KEY OP VALUE` -> Filter. The value may be quoted; `~=` means `~`."""
    m = _FILTER.match(str(text))
    if not m:
        raise FilterError(f"bad filter {text!r}: write KEY OP VALUE, e.g. taken>=2021-06-01, camera~canon, "
                         f"width>=1024 (operators: = != < <= > >= ~)")
    key, op, value = m.group(1), m.group(2), m.group(3)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if not value.strip():
        raise FilterError(f"bad filter {text!r}: no value after {op}")
    return Filter(key, "~" if op == "~=" else op, value, str(text).strip())


def parse_filters(items: Iterable[str | Filter]) -> list[Filter]:
    if isinstance(items, (str, Filter)):
        items = [items]
    return [f if isinstance(f, Filter) else parse_filter(f) for f in items]


def builtin_key(f: Filter) -> str | None:
    """The image fact a filter names (aliases resolved), or None for an imported field."""
    key = ALIASES.get(f.key.lower(), f.key.lower())
    return key if key in KINDS else None


def bad(f: Filter, why: str) -> FilterError:
    return FilterError(f"bad filter {f.raw!r}: {why}")


def unknown_key(f: Filter, fields: Sequence[str]) -> FilterError:
    known = ", ".join(sorted(set(KINDS) | set(ALIASES)))
    return bad(f, f"unknown key {f.key!r}; use one of {known}" + (
        f", or an imported field: {', '.join(fields[:30])}" if fields else " (this library has no imported fields)"))


def check_text_op(f: Filter, what: str = "") -> None:
    if f.op not in ("=", "!=", "~"):
        raise bad(f, what or f"{f.key} is text; use =, != or ~ (contains)")


def tag_value(f: Filter) -> str:
    """A tag filter's value as tags are kept (trimmed, single spaces, lower case)."""
    check_text_op(f, "tags take =, != or ~ (contains)")
    return normalize_tag(f.value)


def ocr_words(f: Filter) -> list[str]:
    """The words a `text` filter looks for in the words read in images (= and ~: all of them are there; !=: not
    all of them)."""
    check_text_op(f, "text takes ~ or = (the words are in the image) or != (they are not)")
    words = text_words(f.value)
    if not words:
        raise bad(f, "give a word to look for in the images' text")
    return words


def yes_no(f: Filter) -> bool:
    """A `has_text` filter: whether the images it keeps have words (=yes, !=no) or not."""
    value = f.value.strip().lower()
    if f.op not in ("=", "!=") or value not in _YES + _NO:
        raise bad(f, f"{f.key} takes =yes or =no")
    return (value in _YES) == (f.op == "=")


def no_contains_for_numbers(f: Filter) -> None:
    if f.op == "~":
        raise bad(f, f"~ (contains) is for text; {f.key} is a number")


# -- values ------------------------------------------------------------------------------------------------------
def _days(dt: datetime) -> float:
    return (dt - _EPOCH).total_seconds() / 86400.0


def date_range(value: str) -> tuple[float, float] | None:
    """A year, month or day -> [start, end) in days since 1970; a full date-time -> (t, t); else None."""
    m = PARTIAL_DATE.match(value.strip())
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


def looks_like_date(value: str) -> bool:
    """A field value compared as a date: a year-month or a day (a bare year compares as a number)."""
    return bool(PARTIAL_DATE.match(value.strip())) and "-" in value


def value_range(f: Filter, as_date: bool) -> tuple[float, float]:
    """The value as a [lo, hi) range (lo == hi: an exact number) for numeric comparison."""
    if as_date:
        rng = date_range(f.value)
        if rng is None:
            raise bad(f, f"{f.value!r} is not a date (write 2021, 2021-06 or 2021-06-01)")
        return rng
    num = field_number(f.value)
    if num is None:
        raise bad(f, f"{f.op} needs a number or a date, not {f.value!r}")
    return num, num


def field_compares_as_number(f: Filter) -> bool:
    """An imported field's filter compares numbers (or dates) rather than text."""
    if f.op == "~":
        return False
    if f.op in ("=", "!="):
        return field_number(f.value) is not None or looks_like_date(f.value)
    return True


def folder_prefixes(value: str, roots: Sequence[str], cwd: str = "") -> list[str]:
    """Absolute folders a `folder=` value names: an absolute or ~ path as is; ./ and ../ from the current
    folder; anything else below each indexed root."""
    v = value.strip()
    if is_url(v):  # a URL root in object storage (ingest/remote.py): as the store keeps it
        return [v.rstrip("/")]
    if v.startswith(("/", "~")):
        return [os.path.normpath(os.path.expanduser(v))]
    if v in (".", "..") or v.startswith(("./", "../")):
        return [os.path.normpath(os.path.join(cwd or os.getcwd(), v))]
    return [f"{root.rstrip('/')}/{v.strip('/')}" if is_url(root) else os.path.normpath(os.path.join(root, v))
            for root in roots]


def no_match_message(empty: Sequence[str], filters: Sequence[Filter], tags: Sequence[str],
                     excluded: Sequence[str]) -> str:
    """Why a search found nothing: `empty` lists what matches no image on its own (no_image_has for filters);
    when nothing does alone, it is the combination."""
    if empty:
        return "; ".join(empty)
    parts = [f.raw for f in filters] + [f"tag:{t}" for t in tags] + [f"-tag:{t}" for t in excluded]
    return f"no image matches all of {', '.join(parts)} together (each matches some images on its own)"


def no_image_has(f: Filter) -> str:
    relative = f.key.lower() == "folder" and not f.value.strip().startswith(("/", "~", "."))
    return f"no image has {f.raw}" + (" (a relative folder is taken below the indexed folders)" if relative else "")
