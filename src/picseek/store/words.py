"""What keyword search reads, the same in every store: the words of a text, the common words it drops, and which
imported fields are searched (the built-in store's FTS5 view, fts.py, says the same in SQL; a test keeps the two
in step)."""
from __future__ import annotations

import re

# Common English words that would match nearly every description; dropped unless nothing else is left.
STOP_WORDS = frozenset("""a an and are as at be by for from in into is it its of on or over the their there this
to under was were with without near next""".split())
_WORD = re.compile(r"[^\W_]+")
SEARCHED_FIELDS = frozenset({"keywords", "subject", "location", "place", "city", "country", "photographer", "label",
                             "labels", "comment", "comments", "notes", "headline", "alt", "alt_text"})
SEARCHED_PARTS = ("description", "caption", "title")


def words_of(text: str) -> list[str]:
    """The distinct lower-case words of `text` (letters and digits; everything else separates)."""
    return list(dict.fromkeys(_WORD.findall(text.lower())))


def query_words(positive: str, negative: str = "") -> tuple[list[str], list[str]]:
    """The words a keyword search looks for, and those it excludes: stop words dropped unless nothing else is
    left (never from the excluded ones)."""
    pos = words_of(positive)
    pos = [w for w in pos if w not in STOP_WORDS] or pos
    return pos, [w for w in words_of(negative) if w not in STOP_WORDS]


def is_searched_field(key: str) -> bool:
    """Whether an imported field's text joins keyword search (descriptions, captions, titles, places, ...)."""
    key = key.lower()
    return key in SEARCHED_FIELDS or any(part in key for part in SEARCHED_PARTS)
