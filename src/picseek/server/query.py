"""Requests -> one call of `Library.search` (the same parser and search function as the CLI and Python API).

A request never makes the server read a file or fetch a URL: path-like and URL terms are refused before the
query is parsed (so the answer cannot tell which files exist), and an uploaded image takes their place.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from PIL import Image

from ..ingest.images import load_image
from ..ingest.paths import KNOWN_IMAGE_EXTENSIONS
from ..query.parse import parse
from ..request import IMAGE, URL, Query, SearchRequest, Term
from .errors import ApiError

_IMAGE_SUFFIX = r"\.(?:" + "|".join(e[1:] for e in KNOWN_IMAGE_EXTENSIONS) + ")"
# Anything the parser could take for a file or a URL: a slash or backslash anywhere (paths, URLs), a word that
# starts with "~" or "." (not a number like .5), or a file name with an image suffix.
_PATHLIKE = re.compile(r"[/\\]|(?:^|[\s\"'+:(-])(?:~|\.(?!\d))|" + _IMAGE_SUFFIX + r"(?=$|[\s\"')+-])", re.IGNORECASE)
_model_lock = threading.Lock()


def check_remote_query(text: str) -> None:
    """Refuse terms that would make the server open a file or a URL named by the client."""
    if _PATHLIKE.search(text):
        raise ApiError(400, "path_in_query", "the server does not open files or URLs named in a query: upload the "
                       "image instead (POST /api/search with an image file) or use id:N of an indexed image")


def compose(text: str, tags: Sequence[str]) -> str:
    """The query string searched: the text plus `tag:NAME` terms for tag chips."""
    parts = [text.strip()] if text and text.strip() else []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            continue
        if '"' in tag or not tag.isprintable():
            raise ApiError(400, "bad_tag", f"tag {tag!r} must be printable text without double quotes")
        parts.append(f'tag:"{tag}"' if any(c.isspace() for c in tag) else f"tag:{tag}")
    return " ".join(parts)


def ensure_model(library) -> None:
    """Load the library's model once, even when many requests arrive together."""
    with _model_lock:
        library.embedder()


def load_upload(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if not data:
        raise ApiError(422, "bad_image", "the uploaded image is empty")
    if len(data) > max_bytes:
        raise ApiError(413, "image_too_large", f"uploaded image too large ({len(data)} bytes; limit {max_bytes})")
    return load_image(data, max_pixels)  # ImageError (not an image, too many pixels) -> 4xx at the edge


def run(library, text: str, *, image: Image.Image | None = None, image_weight: float = 1.0,
        request: SearchRequest) -> tuple[str, list, str | None]:
    """Search with text and/or an uploaded image (an in-memory term: nothing is written to disk); `request`
    holds the options. Returns (the query as searched, hits, a note when filters matched no image at all)."""
    if text:
        check_remote_query(text)
    if image is not None and abs(image_weight) < 0.01:
        raise ApiError(400, "bad_weight", "image_weight must not be 0")
    if image is None and not text:
        raise ApiError(400, "empty_query", "give a query (words, id:N, tag:NAME) or an image")
    query = _parsed(text) if text else Query(())
    if image is not None:
        query = query.plus(Term(IMAGE, image, image_weight))
    ensure_model(library)
    label = text if image is None else " + ".join(
        [text] * bool(text) + [f"{image_weight:g}:<uploaded image>" if image_weight != 1.0 else "<uploaded image>"])
    hits = library.search(request.replace(query=query))
    return label, hits, hits.note  # (no hits and a note: filters matched nothing; not a bad request)


def _parsed(text: str) -> Query:
    query = parse(text)
    for term in query.terms:
        if term.kind in (IMAGE, URL):
            raise ApiError(400, "path_in_query", "the server does not open files or URLs named in a query: upload "
                           "the image instead or use id:N of an indexed image")
    return query
