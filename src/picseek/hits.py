"""Search results of the Python API: `Hit` (one image: its facts, score and how it was found; it opens and shows its
image) and `Hits` (the list `Library.search` returns: a grid of thumbnails in a notebook, and the reason when
filters matched no image at all).

    hits = lib.search("a cat", limit=8)
    hits                      # in Jupyter: a grid of thumbnails with rank, score and file name
    hits[0].open()            # the PIL image
    lib.search("a cat", where=["camera~leica"]).note   # "no image has camera~leica" ([] otherwise)
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import SupportsIndex, overload

from PIL import Image

from . import config
from .errors import ImageError
from .ingest.images import load_image
from .models.base import to_rgb
from .paths import shown

log = logging.getLogger(__name__)
__all__ = ["Hit", "Hits", "THUMB_PX"]

THUMB_PX = 256  # the longer side of a notebook thumbnail
GRID_MAX = 60  # thumbnails a Hits grid draws (each is a decode); the rest are counted
_JPEG_QUALITY = 80


@dataclass
class Hit:
    id: int
    path: str
    score: float | None  # cosine similarity to the query (None: browsing, no query)
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    fields: dict = field(default_factory=dict)  # imported fields: description, photographer, url, ...
    tags: list = field(default_factory=list)  # {"tag", "source" (user, import, auto), "score"}
    rerank_score: float | None = None  # set when the hits were re-ranked
    # which ranking put the hit where it is: "vector", "keyword", "vector+keyword" (fused: found by both), "tag"
    # (hard tags ranked by their words; "tag+keyword" with keywords), "rerank"; None: browsing, duplicates
    via: str | None = None
    # where the image came from when that is not its file: the URL of an image downloaded from a URL list
    # (`picseek index --from-list`; the file in <library>/downloads is a copy)
    source: str | None = None
    # the words read in the image (libraries indexed with OCR; None: none read): {"text", "lines": [{"text", "box"
    # (4 [x, y] corners, fractions of the oriented image), "score", "matched" (the line holds a searched word)}]}
    ocr: dict | None = None

    @property
    def matched_text(self) -> list[str]:
        """The lines of the image's text that hold a searched word."""
        return [line["text"] for line in (self.ocr or {}).get("lines", ()) if line.get("matched")]

    def as_dict(self) -> dict:
        return asdict(self) | {"matched_text": self.matched_text}

    @property
    def name(self) -> str:
        """The file name (the last part of the path, or of the URL a downloaded image came from), in its shown
        form."""
        where = self.source or self.path
        name = where.rstrip("/").rsplit("/", 1)[-1]  # (a URL's too)
        return shown((os.path.basename(name) if os.sep != "/" else name) or where)

    def open(self) -> Image.Image:
        """The image, read from its file (or URL) as a query image is: EXIF-oriented, first frame, refused above
        the `max_image_pixels` setting. Raises ImageError (a missing, changed or unreadable file)."""
        return load_image(self.path, config.get("max_image_pixels"))

    def thumbnail(self, size: int = THUMB_PX) -> Image.Image:
        """A small RGB copy of the image, at most `size` pixels on its longer side (JPEGs decode at reduced scale).
        Raises ImageError."""
        img = to_rgb(load_image(self.path, config.get("max_image_pixels"), draft=size))
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        return img

    def _repr_png_(self) -> bytes | None:
        """Jupyter: the thumbnail as PNG (None when the image cannot be read: the text form is shown instead)."""
        try:
            return _encoded(self.thumbnail(), "PNG")
        except ImageError as exc:
            log.warning("cannot show %s: %s", shown(self.path), exc)
            return None

    def _repr_html_(self) -> str:
        """Jupyter: the thumbnail (a data: URI) captioned with file name, score and how it was found."""
        return _figure(self, None)


class Hits(list):
    """The hits of a search, best first: a list of Hit. `note` says why there are none when filters or tags
    matched no image at all (the NoMatchError message; None otherwise). Slices are Hits too."""

    def __init__(self, hits=(), note: str | None = None):
        super().__init__(hits)
        self.note = note

    @overload
    def __getitem__(self, index: SupportsIndex) -> Hit: ...
    @overload
    def __getitem__(self, index: slice) -> Hits: ...

    def __getitem__(self, index):
        got = super().__getitem__(index)
        return Hits(got, self.note) if isinstance(index, slice) else got

    def __repr__(self) -> str:
        return f"Hits({list.__repr__(self)}" + (f", note={self.note!r})" if self.note else ")")

    def _repr_html_(self) -> str:
        """Jupyter: a grid of thumbnails with rank, score and file name (at most GRID_MAX of them)."""
        if not self:
            why = f": {html.escape(self.note)}" if self.note else ""
            return f"<p><em>No hits{why}.</em></p>"
        cells = "".join(_figure(h, rank) for rank, h in enumerate(self[:GRID_MAX], 1))
        more = (f"<p>... and {len(self) - GRID_MAX} more (hits[{GRID_MAX}:])</p>" if len(self) > GRID_MAX else "")
        return (f'<div class="picseek-hits" style="display:grid;grid-template-columns:repeat(auto-fill,'
                f'minmax({THUMB_PX * 3 // 4}px,1fr));gap:8px;align-items:start">{cells}</div>{more}')


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": _JPEG_QUALITY} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _figure(hit: Hit, rank: int | None) -> str:
    """One hit as an HTML figure: the thumbnail as a JPEG data: URI (or the reason it cannot be shown) and a
    caption of rank, file name, score and via; the full path as the tooltip."""
    path = html.escape(shown(hit.path), quote=True)
    try:
        data = base64.b64encode(_encoded(hit.thumbnail(), "JPEG")).decode("ascii")
        picture = (f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(hit.name, quote=True)}" '
                   f'title="{path}" style="max-width:100%;max-height:{THUMB_PX}px;display:block;margin:auto">')
    except ImageError as exc:
        picture = (f'<div title="{path}" style="padding:1em;border:1px dashed #999;font-size:small">'
                   f'{html.escape(str(exc))}</div>')
    facts = [f"{rank}." if rank is not None else "", f"<b>{html.escape(hit.name)}</b>"]
    if hit.score is not None:
        facts.append(f"{hit.score:.3f}")
    if hit.via:
        facts.append(f"<i>{html.escape(hit.via)}</i>")
    caption = " ".join(f for f in facts if f)
    return (f'<figure style="margin:0;text-align:center">{picture}'
            f'<figcaption style="font-size:small;word-break:break-all">{caption}</figcaption></figure>')
