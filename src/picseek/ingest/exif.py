"""EXIF metadata: taken-at (ISO 8601 with the UTC offset when recorded), camera, lens, GPS, orientation.

Imports only Pillow and the standard library: it runs inside decode worker processes. Broken EXIF loses its
fields, never the photo.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from PIL import ExifTags, Image


@dataclass
class ImageInfo:
    """What a file says about itself. Sizes are the full image's, after EXIF orientation."""

    width: int
    height: int
    format: str  # "JPEG", "PNG", ...
    taken_at: str | None = None  # ISO 8601, with the UTC offset when the file records one
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    gps_lat: float | None = None  # decimal degrees, south negative
    gps_lon: float | None = None  # decimal degrees, west negative
    orientation: int | None = None  # EXIF orientation 1..8 as found in the file




_BASE = ExifTags.Base
_GPS = ExifTags.GPS
# (date tag, the offset tag that belongs to it), best first
_DATE_TAGS = ((_BASE.DateTimeOriginal, _BASE.OffsetTimeOriginal),
              (_BASE.DateTimeDigitized, _BASE.OffsetTimeDigitized),
              (_BASE.DateTime, _BASE.OffsetTime))
_DATE_RE = re.compile(r"\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?")
_OFFSET_RE = re.compile(r"\s*([+-])(\d{2}):?(\d{2})\s*$")


def info_from(img: Image.Image, size: tuple[int, int], format_name: str) -> ImageInfo:
    w, h = size
    exif = exif_of(img)
    orientation = orientation_of(exif)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    info = ImageInfo(width=w, height=h, format=format_name, orientation=orientation)
    if exif is None or not len(exif):
        return info
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # noqa: BLE001 - a broken sub-IFD loses its fields only
        sub = {}
    info.taken_at = _taken_at(exif, sub)
    info.camera_make = _text(exif.get(_BASE.Make))
    info.camera_model = _text(exif.get(_BASE.Model))
    info.lens = _text(sub.get(_BASE.LensModel)) or _text(exif.get(_BASE.LensModel))
    info.gps_lat, info.gps_lon = _gps(exif)
    return info


def exif_of(img: Image.Image) -> Image.Exif | None:
    try:
        return img.getexif()
    except Exception:  # noqa: BLE001 - unreadable EXIF is no reason to skip a photo
        return None


def orientation_of(exif: Image.Exif | None) -> int | None:
    if exif is None:
        return None
    value = exif.get(_BASE.Orientation)
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 8 else None


def _taken_at(exif: Image.Exif, sub: dict) -> str | None:
    for date_tag, offset_tag in _DATE_TAGS:
        stamp = _iso_datetime(_text(sub.get(date_tag) or exif.get(date_tag)))
        if stamp:
            offset = _offset(_text(sub.get(offset_tag) or exif.get(offset_tag)))
            return stamp + offset
    return None


def _iso_datetime(value: str | None) -> str | None:
    m = _DATE_RE.match(value or "")
    if not m:
        return None
    try:
        dt = datetime(*(int(g) if g else 0 for g in m.groups()))
    except ValueError:  # "0000:00:00 00:00:00", month 13, ...
        return None
    return dt.isoformat(timespec="seconds")


def _offset(value: str | None) -> str:
    m = _OFFSET_RE.match(value or "")
    if not m or int(m.group(2)) > 14 or int(m.group(3)) >= 60:
        return ""
    return f"{m.group(1)}{m.group(2)}:{m.group(3)}"


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()
    return value[:200] or None


def _gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001
        return None, None
    if not gps:
        return None, None
    lat = _degrees(gps.get(_GPS.GPSLatitude), gps.get(_GPS.GPSLatitudeRef), "S", 90.0)
    lon = _degrees(gps.get(_GPS.GPSLongitude), gps.get(_GPS.GPSLongitudeRef), "W", 180.0)
    if lat is None or lon is None:
        return None, None
    return lat, lon


def _degrees(value: object, ref: object, negative: str, limit: float) -> float | None:
    try:
        parts = [float(v) for v in value] if isinstance(value, (tuple, list)) else [float(value)]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not parts or len(parts) > 3:
        return None
    deg = sum(p / 60.0**i for i, p in enumerate(parts))
    if not math.isfinite(deg) or not 0.0 <= deg <= limit:
        return None
    if (_text(ref) or "").upper().startswith(negative):
        deg = -deg
    return round(deg, 7)
