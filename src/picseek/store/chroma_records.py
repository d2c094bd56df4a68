"""How one image is kept in a ChromaDB record.

id: the picseek id as a string. Metadata: the image's facts under the built-in store's column names (values that
are missing are left out), plus keys that filters compare: `pid` (the id as a number), `dirs` (every folder above
the file, for `folder=`), `taken_days` (days since 1970, as the built-in store computes them) and `taken_y`,
`taken_m`, `taken_d` (year, year*100+month, whole days: partial dates compare with one key, so `!=` can keep
images without a date). Document: lowercased `key:value` lines (path, name, folder, camera, make, model, lens,
format, taken) that text filters match with regular expressions (`=`, `!=`, `~`).
"""
from __future__ import annotations

import math
import os
from datetime import datetime

from ..ingest.exif import ImageInfo
from ..paths import from_text, to_text

INFO_COLUMNS = tuple(ImageInfo.__dataclass_fields__)
FILE_COLUMNS = ("path", "size", "mtime_ns", "content_hash")
TEXT_KEYS = ("path", "name", "folder", "camera", "make", "model", "lens", "format", "taken")
_INTS = {"width", "height", "orientation", "size", "mtime_ns"}
_FLOATS = {"gps_lat", "gps_lon"}
_EPOCH = datetime(1970, 1, 1)
TAKEN_KEYS = ("taken_days", "taken_y", "taken_m", "taken_d")


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


def without_none(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if v is not None}


def filter_document(meta: dict) -> str:
    """The lowercased `key:value` lines text filters read (one line per value the image has)."""
    path = meta["path"]
    make, model = meta.get("camera_make"), meta.get("camera_model")
    values = {"path": path, "name": os.path.basename(path), "folder": os.path.dirname(path).rstrip("/") + "/",
              "camera": f"{make or ''} {model or ''}".strip(), "make": make, "model": model,
              "lens": meta.get("lens"), "format": meta.get("format"), "taken": meta.get("taken_at")}
    lines = [f"{k}:{' '.join(str(v).splitlines())}".lower() for k, v in values.items() if v is not None]
    return "\n".join(lines)


def row_of(meta: dict) -> dict:
    """A record's metadata as the built-in store's `images` row (id, file facts, image facts, indexed_at)."""
    row = {"id": int(meta["pid"])}
    row.update({k: meta.get(k) for k in FILE_COLUMNS + INFO_COLUMNS})
    row["path"] = from_text(row["path"])
    row["indexed_at"] = meta.get("indexed_at")
    return row
