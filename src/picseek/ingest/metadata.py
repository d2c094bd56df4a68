"""Imported metadata: join rows (from `sources.read_rows`) to indexed images and write them as fields and tags.

A row joins to images by one column read as one kind of key:
  path  a file path: absolute, relative to the metadata file's folder, or the tail of an indexed path; a bare
        file name joins as a `name` does (many tables put `IMG_1.jpg` in their `path` column)
  name  a file name, with or without its extension (`IMG_1.jpg` or `IMG_1`)
  id    an external id that names the file without its extension (Unsplash `photo_id` -> `<photo_id>.jpg`), or an
        image imported as `COLUMN:ID` (`picseek import-embeddings`)
  url   the `url` field of an image downloaded from a URL list (`picseek index --from-list`)
`auto` tries the usual columns for each kind and keeps the (column, kind) pair that matches the most rows.

Column names are lower-cased (spaces and dashes become `_`). Well-known columns get friendly names (see
`RENAMES`; Unsplash's `photo_description` -> `description`, first + last name -> `photographer`), `tags` or
`keywords` become tags (source "import"), sizes from the file go to `source_width`/`source_height` (the decoded
size of the file on disk stays the image's width/height), and every other column is kept as a field.
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError
from .sources import column_names, normalize_name, pick_column

KEYS = ("auto", "path", "name", "id", "url")
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "path": ("path", "filepath", "file_path", "file", "filename", "file_name", "image_path", "image", "name"),
    "name": ("filename", "file_name", "file", "name", "image"),
    "id": ("photo_id", "image_id", "id", "uid", "key"),
    "url": ("url", "photo_image_url", "image_url", "img_url", "photo_url", "src"),
}
# well-known column -> friendly field name (applied only where the friendly name is not a column already)
RENAMES: dict[str, str] = {
    "photo_description": "description", "caption": "description", "photo_image_url": "url", "image_url": "url",
    "photo_url": "page_url", "photo_width": "source_width", "photo_height": "source_height",
    "author": "photographer", "artist": "photographer", "creator": "photographer",
}
# names an imported field may not take: they mean the image itself (decoded size, picseek's own id and path)
RESERVED = {"id": "source_id", "path": "source_path", "width": "source_width", "height": "source_height",
            "score": "source_score"}
FIRST_LAST = ("photographer_first_name", "photographer_last_name")
TAG_COLUMNS = ("tags", "keywords")
_TAG_SPLIT = re.compile(r"[,;|]")
EXAMPLES = 5
# `COLUMN:VALUE`, the path of an image imported with its vector but no file (ingest/embeddings.py): joins by VALUE as
# an id (Unsplash's photo_id), as `<photo_id>.jpg` would
IMPORTED_ID = re.compile(r"^[a-z_][a-z0-9_]*:(?!//)")


@dataclass
class ImportReport:
    """What an import did. `matched`: rows that reached at least one image; `images`: images that got fields."""

    source: str
    column: str | None = None
    key: str | None = None
    rows: int = 0
    matched: int = 0
    images: int = 0
    unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)
    no_key: int = 0  # rows with an empty key cell
    duplicates: int = 0  # rows whose key appeared in an earlier row (the later row's values win)
    duplicate_examples: list[str] = field(default_factory=list)
    ambiguous: int = 0  # rows whose key fits several images (a file name in two folders): all get the values
    fields_written: int = 0
    tags_written: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImageLookup:
    """Indexed images by path, file name, stem and URL, built once per import."""

    by_path: dict[str, int]
    base: Path | None = None  # folder that relative paths start from (the metadata file's folder)
    urls: Callable[[], dict[int, str]] | None = None
    _by_name: dict[str, list[int]] = field(default_factory=dict)
    _by_stem: dict[str, list[int]] = field(default_factory=dict)
    _by_url: dict[str, list[int]] | None = None
    _paths: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path, i in self.by_path.items():
            self._paths[i] = path
            name = os.path.basename(path)
            self._by_name.setdefault(name, []).append(i)
            self._by_stem.setdefault(os.path.splitext(name)[0], []).append(i)
            if (m := IMPORTED_ID.match(path)) and not os.path.isabs(path):
                self._by_stem.setdefault(path[m.end():], []).append(i)

    def match(self, kind: str, value: str) -> list[int]:
        return getattr(self, f"_match_{kind}")(value)

    def _match_path(self, value: str) -> list[int]:
        p = os.path.expanduser(value)
        if os.path.isabs(p):
            hit = self.by_path.get(os.path.normpath(p))
            return [hit] if hit is not None else []
        if self.base is not None:
            hit = self.by_path.get(os.path.normpath(os.path.join(self.base, p)))
            if hit is not None:
                return [hit]
        parts = [x for x in p.replace(os.sep, "/").split("/") if x not in ("", ".", "..")]
        if len(parts) < 2:  # a bare file name (many tables put `IMG_1.jpg` in their path column): as a name
            return self._match_name(parts[0]) if parts else []
        tail = "/" + "/".join(parts)
        return [i for i in self._by_name.get(parts[-1], []) if self._paths[i].endswith(tail)]

    def _match_name(self, value: str) -> list[int]:
        name = os.path.basename(value)
        return self._by_name.get(name) or self._by_stem.get(name, [])

    def _match_id(self, value: str) -> list[int]:
        return self._by_stem.get(value, [])

    def _match_url(self, value: str) -> list[int]:
        if self._by_url is None:
            self._by_url = {}
            for i, url in (self.urls() if self.urls else {}).items():
                self._by_url.setdefault(url, []).append(i)
        return self._by_url.get(value, [])


def key_text(value: object) -> str | None:
    """A key cell as text (ids written as numbers in JSON/Parquet included); None when empty."""
    value = plain(value)
    if value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def plain(value: object) -> object:
    """A cell as a plain JSON-able value; None for empty cells (empty strings, NaN, nulls)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return plain(float(value))
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def choose_key(rows: list[dict], lookup: ImageLookup, key: str = "auto",
               column: str | None = None) -> tuple[str, str]:
    """The (column, kind) that joins the most rows; ties go to the earlier candidate."""
    if key not in KEYS:
        raise UsageError(f"unknown key {key!r}: use one of {', '.join(KEYS)}")
    columns = column_names(rows)
    if column is not None:
        column = pick_column(rows, column, unknown="no column {asked!r} in the file; its columns: {columns}")
    kinds = [k for k in KEYS[1:] if key in ("auto", k)]
    candidates = []
    for kind in kinds:
        names = [column] if column else [columns[c] for c in KEY_COLUMNS[kind] if c in columns]
        candidates += [(c, kind) for c in names if (c, kind) not in candidates]
    if not candidates:
        wanted = ", ".join(KEY_COLUMNS[key]) if key != "auto" else "path, file, filename, name, photo_id, id, url"
        raise UsageError(f"no column to join on (looked for {wanted}): name one with --column "
                         f"(columns: {', '.join(columns.values()) or 'none'})")
    scored = [(sum(1 for r in rows if (v := key_text(r.get(c))) and lookup.match(kind, v)), i, c, kind)
              for i, (c, kind) in enumerate(candidates)]
    _, _, col, kind = max(scored, key=lambda s: (s[0], -s[1]))
    return col, kind


def row_values(row: Mapping, key_column: str, key_kind: str) -> tuple[dict[str, object], list[str]]:
    """One row -> (fields, tags). The key column is kept unless it is a path or file name (the image's own)."""
    raw = {normalize_name(k): plain(v) for k, v in row.items()}
    if key_kind in ("path", "name"):
        raw.pop(normalize_name(key_column), None)
    elif key_kind == "url":  # the URL the image came from is `url`; another url column keeps its value aside
        value = raw.pop(normalize_name(key_column), None)
        if "url" in raw:
            raw["source_url"] = raw.pop("url")
        raw["url"] = value
    tags: list[str] = []
    for col in TAG_COLUMNS:
        tags += _tag_list(raw.pop(col, None))
    if "photographer" not in raw and any(raw.get(c) for c in FIRST_LAST):
        raw["photographer"] = " ".join(str(raw[c]) for c in FIRST_LAST if raw.get(c))
        for c in FIRST_LAST:
            raw.pop(c, None)
    fields: dict[str, object] = {}
    for name, value in raw.items():
        if value is None or value == [] or value == {}:
            continue
        target = RENAMES.get(name, name)
        if target != name and target in raw:
            target = name  # the friendly name is a column of its own: keep both as written
        fields[RESERVED.get(target, target)] = value
    return fields, tags


def _tag_list(value: object) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else _TAG_SPLIT.split(str(value))
    return [str(t).strip() for t in items if t is not None and str(t).strip()]


def join_rows(rows: Iterable[dict], lookup: ImageLookup, report: ImportReport, key_column: str,
              key_kind: str) -> tuple[dict[int, dict], dict[int, list[str]]]:
    """Rows -> (image id -> fields, image id -> tags), counting matches, misses and duplicates in `report`."""
    fields: dict[int, dict] = {}
    tags: dict[int, list[str]] = {}
    seen: set[str] = set()
    for row in rows:
        value = key_text(row.get(key_column))
        if value is None:
            report.no_key += 1
            continue
        if value in seen:
            report.duplicates += 1
            _example(report.duplicate_examples, value)
        seen.add(value)
        ids = lookup.match(key_kind, value)
        if not ids:
            report.unmatched += 1
            _example(report.unmatched_examples, value)
            continue
        report.matched += 1
        report.ambiguous += len(ids) > 1
        values, row_tags = row_values(row, key_column, key_kind)
        for i in ids:
            fields.setdefault(i, {}).update(values)
            if row_tags:
                tags.setdefault(i, []).extend(t for t in row_tags if t not in tags.get(i, []))
    report.images = len(set(fields) | set(tags))
    return fields, tags


def _example(examples: list[str], value: str) -> None:
    if len(examples) < EXAMPLES and value not in examples:
        examples.append(value)


def import_rows(store, rows: Iterable[dict], *, source: str, key: str = "auto", column: str | None = None,
                base: Path | None = None, urls: Mapping[int, str] | None = None) -> ImportReport:
    """Join `rows` to the images in `store` and write their fields and tags (one transaction each).
    `urls` (image id -> URL) replaces the stored `url` fields for URL joins (images downloaded just now)."""
    rows = list(rows)
    report = ImportReport(source=source, rows=len(rows))
    if not rows:
        return report
    lookup = ImageLookup({p: s.id for p, s in store.file_states([]).items()}, base,
                         urls=(lambda: dict(urls)) if urls is not None else (lambda: store.field_values("url")))
    report.column, report.key = choose_key(rows, lookup, key, column)
    fields, tags = join_rows(rows, lookup, report, report.column, report.key)
    report.fields_written = store.set_fields(fields.items(), source="import")
    report.tags_written = store.add_tags((i, t, "import", None) for i, ts in tags.items() for t in ts)
    return report
