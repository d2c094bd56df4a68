"""Turn a parsed query into one unit vector in one of the model's spaces (the store then ranks its vectors
against it)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..ingest.fetch import fetch_bytes
from ..ingest.images import load_image
from ..models.base import MAIN, l2_normalize, prepare_image
from ..request import ID, IMAGE, TEXT, URL, Query, Term
from .parse import QueryError, QueryImageError


@dataclass(frozen=True)
class SearchOptions:
    """Limits for the example images a query names or holds."""

    max_pixels: int
    url_max_bytes: int
    url_timeout: float


def _term_image(term: Term, query: Query, opts: SearchOptions) -> Image.Image:
    try:
        if term.in_memory:  # a PIL image, or encoded bytes (an upload)
            return term.value if isinstance(term.value, Image.Image) else load_image(term.value, opts.max_pixels)
        if term.kind == URL:
            return load_image(fetch_bytes(term.value, opts.url_max_bytes, opts.url_timeout), opts.max_pixels)
        return load_image(term.value, opts.max_pixels)
    except QueryError:
        raise
    except ImageError as exc:
        raise QueryImageError(str(exc), query.text, term.pos if query.text else None) from exc


def query_space(query: Query, embedder, spaces: list[str]) -> str:
    """Example-image-only queries use the model's image space when the library has it; all else the main one."""
    if query.is_image_only and embedder.image_query_space in spaces:
        return embedder.image_query_space
    return MAIN


def embed_image(img: Image.Image, embedder, space: str) -> np.ndarray:
    return embedder.embed_pixels(prepare_image(img, embedder.image_spec)[None])[space][0]


def embed_query(query: Query, embedder, store, space: str, opts: SearchOptions) -> np.ndarray:
    """The weighted sum of the vector terms' unit vectors, normalised again (tags must be dealt with first)."""
    terms = query.vector_terms
    texts = [t.value for t in terms if t.kind == TEXT]
    text_vecs = iter(embedder.embed_texts(texts)) if texts else iter(())
    total = None
    scale = max(abs(t.weight) for t in terms) if terms else 1.0  # only ratios matter: 1e308:cat must not overflow
    for term in terms:
        if term.kind == TEXT:
            v = next(text_vecs)
        elif term.kind in (IMAGE, URL):
            v = embed_image(_term_image(term, query, opts), embedder, space)
        elif term.kind == ID:
            v = store.vector_of(int(term.value), space)
            if v is None:
                raise QueryError(f"id:{term.value} is not an indexed image", query.text,
                                 term.pos if query.text else None)
        else:  # pragma: no cover - tags never reach here
            raise QueryError(f"a {term.kind} term has no vector", query.text, term.pos)
        v = l2_normalize(v) * (term.weight / scale)
        total = v if total is None else total + v
    if total is None:
        raise QueryError("nothing to search for: give words, an image or id:N", query.text, 0)
    if float(np.linalg.norm(total)) < 1e-6:
        raise QueryError("the terms cancel each other out", query.text, 0)
    return l2_normalize(total)


def query_vector(query: Query, embedder, store, spaces: list[str], opts: SearchOptions) -> tuple[str, np.ndarray]:
    """The space to search and the unit query vector of the query's terms."""
    space = query_space(query, embedder, spaces)
    return space, embed_query(query, embedder, store, space, opts)
