"""What a query string means: text, an example image (a file path or an http(s) URL), or an indexed image (id:N)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

TEXT, IMAGE, URL, ID = "text", "image", "url", "id"
_ID = re.compile(r"^id:(\d+)$")
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|avif)$", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    kind: str  # TEXT, IMAGE, URL or ID
    value: str
    weight: float = 1.0


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]

    @property
    def is_image_only(self) -> bool:
        return all(t.kind != TEXT for t in self.terms)


def parse_term(raw: str) -> Term:
    s = raw.strip()
    if not s:
        raise UsageError("empty query: give some words, an image file, an image URL or id:N")
    if s.startswith(("http://", "https://")):
        return Term(URL, s)
    m = _ID.match(s)
    if m:
        return Term(ID, m.group(1))
    p = Path(s).expanduser()
    if p.is_file():
        return Term(IMAGE, str(p.resolve()))
    if p.is_dir():
        raise UsageError(f"query {s!r} is a folder, not an image: give one image file")
    if _IMAGE_SUFFIX.search(s) and (os.sep in s or s.startswith(("~", ".")) or " " not in s):
        raise UsageError(f"query image not found: {s}")
    return Term(TEXT, s)


def parse(raw: str | os.PathLike) -> Query:
    """One query string -> a Query. (The full query language with +, - and weights builds on these terms.)"""
    return Query((parse_term(os.fspath(raw)),))
