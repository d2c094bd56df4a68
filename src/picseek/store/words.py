"""What keyword search reads, the same in every store: the words of a text, the common words it drops, and which
imported fields are searched (the built-in store's FTS5 view, fts.py, says the same in SQL; a test keeps the two
in step)."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

# Common English words that would match nearly every description; dropped unless nothing else is left.
STOP_WORDS = frozenset("""a an and are as at be by for from in into is it its of on or over the their there this
to under was were with without near next""".split())
_WORD = re.compile(r"[^\W_]+")
_RUNS = re.compile(r"[^\W\d_]+|\d+")  # runs of letters, runs of digits
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


# -- words read in images (OCR): matching that forgives a few reading errors --------------------------------------
def fold(text: str) -> str:
    """Lower case, accents removed (what the stores' `remove_diacritics` tokenizers index)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def allowed_edits(word: str) -> int:
    """How many letters a recognised word may differ by and still match: none up to 3 letters, 1 up to 6, else 2
    (OCR misreads a letter or two: rn/m, l/1, O/0, a dropped or doubled letter)."""
    return 0 if len(word) <= 3 else 1 if len(word) <= 6 else 2


def within_edits(a: str, b: str, k: int) -> bool:
    """Whether the edit distance (insertions, deletions, substitutions) between a and b is at most k."""
    if abs(len(a) - len(b)) > k:
        return False
    if a == b:
        return True
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(row) > k:
            return False
        prev = row
    return prev[-1] <= k


def close_to(word: str, term: str) -> bool:
    """A recognised word `term` matches a searched `word`: within allowed_edits of it or of a part of it (OCR often
    loses the space between words: "grocerystore", "noparking", "towawayzone"); a word of 2 or 3 letters only
    exactly, or at either end of a run of letters in `term`; one letter only exactly; a number only as a whole run of
    digits in `term`."""
    if word == term or len(word) < 2:
        return word == term
    if word.isdigit():  # a number is read right or not at all (2024 is not 2025)
        return word in _RUNS.findall(term)
    if len(word) <= 3:
        return word in term and any(r.startswith(word) or r.endswith(word) for r in _RUNS.findall(term))
    return _in_with_edits(word, term, allowed_edits(word))


def _pieces(word: str) -> list[str]:
    """k+1 pieces of a word (k = allowed_edits): a term within k edits of it holds one of them unchanged."""
    n = (allowed_edits(word) if len(word) >= 4 else 0) + 1
    cuts = [len(word) * i // n for i in range(n + 1)]  # n pieces, as long as each other as can be
    return [word[a:b] for a, b in zip(cuts, cuts[1:])]


def _in_with_edits(word: str, term: str, k: int) -> bool:
    """Whether some part of `term` is within k edits of `word` (Sellers' dynamic programme: a match may start
    anywhere). One of k+1 pieces of `word` must then be in `term` as it is: a fast test first."""
    if not any(p in term for p in _pieces(word)):
        return False
    prev = [0] * (len(term) + 1)
    for i, cw in enumerate(word, 1):
        row = [i]
        for j, ct in enumerate(term, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (cw != ct)))
        prev = row
    return min(prev) <= k


def close_words(word: str, vocabulary: Iterable[str]) -> list[str]:
    """The words of a vocabulary (recognised words, folded) that match a searched word (close_to). The candidates
    (terms holding a piece of the word unchanged) are found by one regular expression over the whole vocabulary,
    so a 100k-word vocabulary costs milliseconds, not a Python loop over every term."""
    blob = "\n".join(vocabulary)
    pattern = re.compile("^.*(?:" + "|".join(map(re.escape, dict.fromkeys(_pieces(word)))) + ").*$", re.M)
    return [t for t in dict.fromkeys(m.group(0) for m in pattern.finditer(blob)) if close_to(word, t)]


def read_variants(positive: str, vocabulary: Sequence[str]) -> list[str]:
    """The words read in images that keyword search also looks for: those close to a positive query word
    (close_to: a reading error, or the word inside a run the reader did not space) but not the word itself."""
    words = text_words(positive)
    if not vocabulary or not words:
        return []
    return sorted({t for w in words for t in close_words(w, vocabulary)} - set(words))


def text_words(text: str) -> list[str]:
    """The words a `text:` search looks for in the words read in images (folded; stop words as query_words)."""
    return query_words(fold(text))[0]


def line_matches(line: str, words: Sequence[str]) -> bool:
    """Whether a recognised line holds one of `words` (folded searched words), as the `text:` filter matches."""
    return any(close_to(w, t) for t in words_of(fold(line)) for w in words)
