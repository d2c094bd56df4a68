"""A search as data: the parsed query (`Query` of `Term`s), filters (`Filter`) and every option (`SearchRequest`).

The CLI, the REST API and the Python API each build one SearchRequest and hand it to `Library.search`; nothing
below them reads options one keyword at a time. This module imports nothing else from picseek, so every layer
(stores, query engine, interfaces) can speak it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TEXT, IMAGE, URL, ID, TAG = "text", "image", "url", "id", "tag"
IN_TEXT = "in_text"  # `text:"WORDS"`: the words read in the image (OCR) hold these (a filter, as a hard tag is)
VECTOR_KINDS = (TEXT, IMAGE, URL, ID)
SORTS = ("score", "date", "newest")


@dataclass(frozen=True)
class Term:
    """One term of a query. `value`: the text, a file path, a URL, an image id (as text) or a tag; an IMAGE term
    may also hold the image itself (a PIL image or encoded bytes: an upload, a notebook's image)."""

    kind: str  # TEXT, IMAGE, URL, ID, TAG or IN_TEXT
    value: object
    weight: float = 1.0  # signed: a negative term pushes results away
    pos: int = field(default=0, compare=False)  # where the term starts in the query text (0-based)

    @property
    def in_memory(self) -> bool:
        """An image held in memory rather than named by a path or URL."""
        return self.kind == IMAGE and not isinstance(self.value, str)


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]
    text: str = field(default="", compare=False)  # the text it was parsed from (for error positions)

    @property
    def vector_terms(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.kind in VECTOR_KINDS)

    @property
    def is_image_only(self) -> bool:
        """True when every vector term is an example image (the query may then use an image-only space)."""
        vt = self.vector_terms
        return bool(vt) and all(t.kind != TEXT for t in vt)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(str(t.value) for t in self.terms if t.kind == TAG and t.weight >= 0)

    @property
    def excluded_tags(self) -> tuple[str, ...]:
        return tuple(str(t.value) for t in self.terms if t.kind == TAG and t.weight < 0)

    @property
    def words(self) -> str:
        """The positive text terms as one string (what keyword search and re-ranking read)."""
        return " ".join(str(t.value) for t in self.terms if t.kind == TEXT and t.weight > 0)

    @property
    def negative_words(self) -> str:
        return " ".join(str(t.value) for t in self.terms if t.kind == TEXT and t.weight < 0)

    @property
    def in_text(self) -> tuple[tuple[str, bool], ...]:
        """The `text:` terms: (words, True) for text the image must show, (words, False) for text it must not."""
        return tuple((str(t.value), t.weight >= 0) for t in self.terms if t.kind == IN_TEXT)

    def without_in_text(self) -> Query:
        return Query(tuple(t for t in self.terms if t.kind != IN_TEXT), self.text)

    def with_soft_tags(self) -> Query:
        """Each tag becomes a text term with the same weight and sign."""
        return Query(tuple(Term(TEXT, t.value, t.weight, t.pos) if t.kind == TAG else t for t in self.terms),
                     self.text)

    def without_tags(self) -> Query:
        return Query(tuple(t for t in self.terms if t.kind != TAG), self.text)

    def plus(self, *terms: Term) -> Query:
        return Query(self.terms + tuple(terms), self.text)


@dataclass(frozen=True)
class Filter:
    """One `KEY OP VALUE` filter (`raw`: as the user wrote it, for messages)."""

    key: str
    op: str
    value: str
    raw: str


@dataclass(frozen=True)
class SearchRequest:
    """Everything one search needs besides the library (docs/query.md).

    query: a query string, a parsed Query, or an image (a PIL image or encoded bytes) that is the whole query.
    where: filters such as "taken>=2021-06-01" (all must hold). sort: None/"score", "date" (oldest first) or
    "newest". keywords: fuse keyword matches with the vector ranking (True: the keyword_weight setting; a number:
    that weight; False: off). soft_tags: tags rank instead of filter. rerank: a re-ranking model applied to the
    first `rerank_top` hits. adaptive: drop hits far below the best (True: ratio 0.5; a ratio in (0, 1]).
    threshold: the least cosine score kept. exact: score every vector even where the approximate index would
    answer."""

    query: object = ""
    limit: int = 20
    threshold: float | None = None
    where: tuple = ()
    sort: str | None = None
    keywords: bool | float = True
    soft_tags: bool = False
    rerank: str | None = None
    rerank_top: int = 50
    adaptive: bool | float | None = None
    exact: bool = False

    def __post_init__(self):
        if isinstance(self.where, (str, Filter)):
            object.__setattr__(self, "where", (self.where,))
        else:
            object.__setattr__(self, "where", tuple(self.where or ()))

    def replace(self, **changes) -> SearchRequest:
        return dataclasses.replace(self, **changes)
