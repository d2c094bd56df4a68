"""How one image is kept in a ChromaDB record.

id: the picseek id as a string. Metadata: the image's facts under the built-in store's column names (values that
are missing are left out), plus keys that filters compare: `pid` (the id as a number), `dirs` (every folder above
the file, for `folder=`), `taken_days` (days since 1970, as the built-in store computes them) and `taken_y`,
`taken_m`, `taken_d` (year, year*100+month, whole days: partial dates compare with one key, so `!=` can keep
images without a date). Imported fields and tags: `fields` (JSON: key -> [text, number or None, source]) and `tags`
(JSON: [[tag, source, score], ...]) hold them whole; `n:KEY` holds a field's number for comparisons.

Document: lowercased `key:value` lines that text filters match with regular expressions (`=`, `!=`, `~`): path,
name, folder, camera, make, model, lens, format, taken; `tag:TAG` per tag; `field.KEY:VALUE` per imported field;
and the keyword lines keyword search reads, `kw.name:`, `kw.folder:`, `kw.fields:`, `kw.tags:`, `kw.text:`, each the
Porter-stemmed words of what the built-in store's FTS5 table holds for the image (store/fts.py, store/words.py).
Words read in the image (OCR): `ocr` (JSON: {"text", "lines", "error"}) and `has_text` (whether it has words; absent
while it was never read) in the metadata, and an `ocr:` line of its words as read (folded, not stemmed) that the
`text` filter matches.
"""
from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime

from ..paths import from_text, to_text
from .base import INFO_COLUMNS, TextRecord
from .values import field_number
from .words import fold, is_searched_field, words_of

FILE_COLUMNS = ("path", "size", "mtime_ns", "content_hash")
TEXT_KEYS = ("path", "name", "folder", "camera", "make", "model", "lens", "format", "taken")
_INTS = {"width", "height", "orientation", "size", "mtime_ns"}
_FLOATS = {"gps_lat", "gps_lon"}
_EPOCH = datetime(1970, 1, 1)
TAKEN_KEYS = ("taken_days", "taken_y", "taken_m", "taken_d")
FIELDS, TAGS, NUM_PREFIX, OCR, HAS_TEXT = "fields", "tags", "n:", "ocr", "has_text"
KEYWORD_COLUMNS = ("name", "folder", "fields", "tags", "text")
_stemmer = None


def ancestors(path: str) -> list[str]:
    """Every folder above a file, nearest first: /a/b/c.jpg -> [/a/b, /a, /]."""
    out, parent = [], os.path.dirname(path)
    while parent and parent not in out:
        out.append(parent)
        parent = os.path.dirname(parent)
    return out


def _plain(key: str, value):
    """A metadata value ChromaDB accepts (None: leave the key out)."""
    if value is None:
        return None
    if key in _INTS:
        return int(value)
    if key in _FLOATS:
        value = float(value)
        return value if math.isfinite(value) else None
    return str(value)


def taken_keys(taken_at: str | None) -> dict:
    """The numbers `taken` filters compare, from the first 19 characters of taken_at (its local time)."""
    if not taken_at:
        return {}
    try:
        dt = datetime.fromisoformat(str(taken_at)[:19])
    except ValueError:
        return {}
    days = (dt - _EPOCH).total_seconds() / 86400.0
    return {"taken_days": days, "taken_y": dt.year, "taken_m": dt.year * 100 + dt.month, "taken_d": math.floor(days)}


def image_metadata(image_id: int, path: str, size: int, mtime_ns: int, content_hash: str, info: dict,
                   indexed_at: float) -> dict:
    path = to_text(path)  # (valid text for any file name: paths.py)
    meta = {"pid": int(image_id), "path": path, "size": int(size), "mtime_ns": int(mtime_ns),
            "content_hash": str(content_hash), "indexed_at": float(indexed_at), "dirs": ancestors(path)}
    for key in INFO_COLUMNS:
        meta[key] = _plain(key, info.get(key))
    meta.update(dict.fromkeys(TAKEN_KEYS), **taken_keys(meta.get("taken_at")))
    return meta  # None: a value the image lacks (an upsert then drops the key a former version of the file had)


def carried(old: dict, text: bool = False) -> dict:
    """What a record keeps when its file is written again or moves: its imported fields and tags (`text`: and the
    words read in it: a moved file's)."""
    keep = (FIELDS, TAGS, OCR, HAS_TEXT) if text else (FIELDS, TAGS)
    return {k: v for k, v in old.items() if k in keep or k.startswith(NUM_PREFIX)}


def text_metadata(text: TextRecord | None) -> dict:
    """The metadata keys of the words read in an image (None: never read: the keys are dropped)."""
    if text is None:
        return {OCR: None, HAS_TEXT: None}
    return {OCR: json.dumps({"text": text.text, "lines": list(text.lines), "error": text.error}),
            HAS_TEXT: bool(text.text)}


def text_of(meta: dict) -> TextRecord | None:
    raw = meta.get(OCR)
    if not raw:
        return None
    d = json.loads(raw)
    return TextRecord(d["text"], d["lines"], d.get("error"))


def _ocr_words(meta: dict) -> str:
    text = text_of(meta)
    return text.text if text is not None else ""


def fields_of(meta: dict) -> dict[str, list]:
    return json.loads(meta.get(FIELDS) or "{}")


def tags_of(meta: dict) -> list[list]:
    return json.loads(meta.get(TAGS) or "[]")


def with_fields(meta: dict, values: dict[str, object], source: str) -> dict:
    """`meta` with fields set (None: removed), as the built-in store keeps them (text, and a number to compare)."""
    fields, out = fields_of(meta), dict(meta)
    for key, value in values.items():
        if value is None:
            fields.pop(key, None)
            out[NUM_PREFIX + key] = None
            continue
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        num = field_number(value)
        fields[key] = [text, num, source]
        out[NUM_PREFIX + key] = num
    out[FIELDS] = json.dumps(fields) if fields else None
    return out


def with_tags(meta: dict, tags: list[list]) -> dict:
    """`meta` with its tags ([tag, source, score], kept sorted by tag) replaced."""
    return dict(meta, **{TAGS: json.dumps(sorted(tags)) if tags else None})


def stem_words(text: str) -> list[str]:
    """The Porter stems of a text's words (what the built-in store's FTS5 `porter` tokenizer indexes)."""
    global _stemmer
    if _stemmer is None:
        import snowballstemmer

        _stemmer = snowballstemmer.stemmer("porter")
    return _stemmer.stemWords(words_of(fold(text)))



def keyword_text(meta: dict) -> dict[str, str]:
    """The text of each keyword column: file name, folder name, searched text fields, tags."""
    path = meta["path"]
    folder = os.path.basename(os.path.dirname(path).rstrip("/"))
    fields = " ".join(text for key, (text, num, _) in fields_of(meta).items() if num is None and is_searched_field(key))
    return {"name": os.path.basename(path), "folder": folder, "fields": fields,
            "tags": " ".join(t for t, _, _ in tags_of(meta)), "text": _ocr_words(meta)}


def browse_key(meta: dict) -> str:
    """What browsing orders by, as the built-in store computes it (sqlite_search.BROWSE_KEY): the taken date's
    first 19 characters, else the file's modification time in UTC."""
    taken = meta.get("taken_at")
    if taken:
        return str(taken)[:19]
    return datetime.fromtimestamp(int(meta["mtime_ns"]) // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def without_none(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if v is not None}


def filter_document(meta: dict) -> str:
    """The lowercased `key:value` lines text filters read (one line per value the image has)."""
    path = meta["path"]
    make, model = meta.get("camera_make"), meta.get("camera_model")
    values = {"path": path, "name": os.path.basename(path), "folder": os.path.dirname(path).rstrip("/") + "/",
              "camera": f"{make or ''} {model or ''}".strip(), "make": make, "model": model,
              "lens": meta.get("lens"), "format": meta.get("format"), "taken": meta.get("taken_at")}
    lines = [f"{k}:{_line(v)}".lower() for k, v in values.items() if v is not None]
    lines += [f"tag:{_line(t)}" for t, _, _ in tags_of(meta)]
    lines += [f"field.{_line(k)}:{_line(text).lower()}" for k, (text, _, _) in fields_of(meta).items()]
    lines += [f"kw.{col}:{' '.join(stem_words(text))}" for col, text in keyword_text(meta).items()]
    words = words_of(fold(_ocr_words(meta)))
    if words:
        lines.append(f"ocr:{' '.join(words)}")
    return "\n".join(lines)


def _line(value) -> str:
    return " ".join(str(value).splitlines())


def row_of(meta: dict) -> dict:
    """A record's metadata as the built-in store's `images` row (id, file facts, image facts, indexed_at)."""
    row = {"id": int(meta["pid"])}
    row.update({k: meta.get(k) for k in FILE_COLUMNS + INFO_COLUMNS})
    row["path"] = from_text(row["path"])
    row["indexed_at"] = meta.get("indexed_at")
    return row
