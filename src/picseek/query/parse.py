"""The query language: what a query string means (documented with examples in docs/query.md).

    ./me.jpg + "in winter" - people          an example image, plus words, minus words
    2:"at night" 0.5:./a.jpg id:42           weights; an indexed image by id
    tag:beach -tag:people sunset             tags (a hard filter unless soft tags are asked for)
    receipt text:"total due"                 words read in the image (OCR; a filter, forgiving reading errors)

A term is a quoted string, a `tag:`/`id:`/`text:` term, an http(s) URL, or a run of bare words. Bare words that name an
existing image file (a path may contain spaces) become image terms; the other words of the run are text. `+` and
`-` (alone, or right before a term) set the sign of the term after them; juxtaposed terms are added. `N:` in front
of a term weights it. Any problem is one `QueryError` (a `UsageError`) that names the column of the bad term.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError, UsageError
from ..ingest.paths import has_image_extension
from ..request import ID, IMAGE, IN_TEXT, TAG, TEXT, URL, Query, Term
from ..store.base import MAX_ID

QUOTES = "\"'"
MAX_PATH_WORDS = 32  # longest run of words tried as one file path (a path with spaces)
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
PREFIXES = {"id": ID, "tag": TAG, "text": IN_TEXT}  # prefix: -> the kind of term
_NUMBERISH = re.compile(r"^[+-]?([0-9.]|(nan|inf|infinity)$)", re.IGNORECASE)  # (nan: and inf: are refused)


class QueryError(UsageError):
    """A malformed query; the message names the bad term and its column (1-based)."""

    def __init__(self, problem: str, query: str = "", pos: int | None = None):
        where = ""
        if pos is not None and query:
            near = query[pos:pos + 30].replace("\n", " ")
            where = f" (column {pos + 1}: {near!r})" if near else f" (column {pos + 1}, the end)"
        super().__init__(f"bad query: {problem}{where}")
        self.pos = pos


class QueryImageError(QueryError, ImageError):
    """An example image in a query that cannot be read or fetched (also an ImageError)."""


# -- classifying one piece of text -------------------------------------------------------------------------------
def _path_like(s: str) -> bool:
    return s.startswith(("/", "~", ".")) or os.sep in s


def _image_file(s: str) -> str | None:
    """The resolved path when `s` names an existing file that looks like an image path, else None."""
    if not s or "\0" in s or not (has_image_extension(s) or _path_like(s)):
        return None
    try:
        p = Path(s).expanduser()
        return str(p.resolve()) if p.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None


def _is_dir(s: str) -> bool:
    try:
        return "\0" not in s and Path(s).expanduser().is_dir()
    except (OSError, RuntimeError, ValueError):
        return False


def _classify(s: str, query: str, pos: int, whole: bool) -> Term | None:
    """A file, URL or missing-image error for `s`; None when it is plain text. `whole`: `s` is a complete term."""
    if _URL.match(s):
        return Term(URL, s, pos=pos)
    path = _image_file(s)
    if path:
        return Term(IMAGE, path, pos=pos)
    if whole and _path_like(s) and _is_dir(s):
        raise QueryError(f"{s!r} is a folder, not an image: give one image file", query, pos)
    if has_image_extension(s) and (_path_like(s) or (whole and " " not in s)):
        raise QueryError(f"query image not found: {s}", query, pos)
    return None


def parse_term(raw: str) -> Term:
    """One term, all of `raw` (no operators): `id:N`, `tag:NAME`, a URL, an image file, or text."""
    s = raw.strip()
    if not s:
        raise UsageError("empty query: give some words, an image file, an image URL or id:N")
    prefix, _, rest = s.partition(":")
    if prefix.lower() in PREFIXES and rest:
        return _prefixed(PREFIXES[prefix.lower()], rest.strip(), s, 0)
    return _classify(s, s, 0, whole=True) or Term(TEXT, s)


def _prefixed(kind: str, value: str, query: str, pos: int) -> Term:
    if kind == ID:
        if not value.isdigit() or not value.isascii():
            raise QueryError(f"id:{value} — an id is a number (id:42)", query, pos)
        if not 0 < int(value) <= MAX_ID:
            raise QueryError(f"id:{value} is not an indexed image (ids run from 1 to {MAX_ID})", query, pos)
        return Term(ID, str(int(value)), pos=pos)
    if kind == IN_TEXT:
        words = " ".join(value.split())
        if not words:
            raise QueryError('text: needs the words to look for (text:"total due")', query, pos)
        return Term(IN_TEXT, words, pos=pos)
    tag = " ".join(value.split()).lower()
    if not tag:
        raise QueryError("tag: needs a name (tag:beach)", query, pos)
    return Term(TAG, tag, pos=pos)


# -- the tokenizer ---------------------------------------------------------------------------------------------
@dataclass
class _Tok:
    kind: str  # "op", "quoted", "word", "special" (id:/tag:/URL), "weight"
    value: str
    pos: int
    end: int


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """The string starting at the quote s[i] (backslash escapes the quote and itself) and the index after it."""
    quote, out, j = s[i], [], i + 1
    while j < len(s):
        c = s[j]
        if c == "\\" and j + 1 < len(s) and s[j + 1] in (quote, "\\"):
            out.append(s[j + 1])
            j += 2
            continue
        if c == quote:
            if j + 1 < len(s) and not (s[j + 1].isspace() or s[j + 1] in "+-"):
                raise QueryError("put a space after the closing quote", s, j + 1)
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise QueryError(f"unbalanced {quote}: no closing quote", s, i)


def _word_end(s: str, i: int) -> int:
    j = i
    while j < len(s) and not s[j].isspace():
        j += 1
    return j


def _is_op(s: str, i: int) -> bool:
    return s[i] in "+-" and (i + 1 == len(s) or not s[i + 1].isdigit())


def _tokens(s: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
        elif _is_op(s, i):
            toks.append(_Tok("op", c, i, i + 1))
            i += 1
        elif c in QUOTES:
            value, end = _read_quoted(s, i)
            toks.append(_Tok("quoted", value, i, end))
            i = end
        else:
            i = _word_or_prefix(s, i, toks)
    return toks


def _word_or_prefix(s: str, i: int, toks: list[_Tok]) -> int:
    """A bare word, a URL, a `tag:`/`id:` term or a weight prefix starting at s[i]; returns where it ends."""
    end = _word_end(s, i)
    word = s[i:end]
    colon = word.find(":")
    if colon <= 0 or _URL.match(word):
        toks.append(_Tok("special" if _URL.match(word) else "word", word, i, end))
        return end
    prefix, after = word[:colon], word[colon + 1:colon + 2]
    k = i + colon + 1  # just after the colon
    if prefix.lower() in PREFIXES:
        if after and after in QUOTES:
            value, end = _read_quoted(s, k)
        else:
            value = s[k:end]
        toks.append(_Tok("special", f"{prefix.lower()}:{value}", i, end))
        return end
    numberish = bool(_NUMBERISH.match(prefix)) and after != "" and not after.isdigit()
    if numberish or (after and after in QUOTES):
        try:
            weight = float(prefix)
        except ValueError:
            raise QueryError(f"weight {prefix!r} is not a number (write 2:\"words\" or 0.5:./a.jpg)",
                             s, i) from None
        if not math.isfinite(weight):
            raise QueryError(f"weight {prefix!r} is not a finite number", s, i)
        toks.append(_Tok("weight", prefix, i, k))
        return k
    toks.append(_Tok("word", word, i, end))
    return end


# -- the parser ------------------------------------------------------------------------------------------------
def parse(raw: str | os.PathLike) -> Query:
    """A query string -> a Query (a path object is one example image). Raises QueryError/UsageError."""
    if isinstance(raw, os.PathLike):
        return Query((parse_term(os.fspath(raw)),), os.fspath(raw))
    s = str(raw)
    if not s.strip():
        raise UsageError("empty query: give some words, an image file, an image URL or id:N")
    terms: list[Term] = []
    toks = _tokens(s)
    sign, weight, pending = 1.0, 1.0, None  # pending: the op or weight token that waits for its term
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "op":
            if pending is not None:
                raise QueryError(f"{_label(pending)!r} needs a term after it", s, pending.pos)
            sign, pending = (-1.0 if tok.value == "-" else 1.0), tok
            i += 1
            continue
        if tok.kind == "weight":
            if pending is not None and pending.kind == "weight":
                raise QueryError("two weights in a row", s, tok.pos)
            weight, pending = float(tok.value), tok
            i += 1
            continue
        j = i + 1
        if tok.kind == "word":
            while j < len(toks) and toks[j].kind == "word":
                j += 1
        for t in _terms_of(toks[i:j], s):
            terms.append(Term(t.kind, t.value, sign * weight * t.weight, t.pos))
        sign, weight, pending = 1.0, 1.0, None
        i = j
    if pending is not None:
        raise QueryError(f"{_label(pending)!r} needs a term after it", s, pending.pos)
    if not any(t.weight > 0 for t in terms):
        raise QueryError("a query needs at least one term with a positive weight", s, terms[0].pos if terms else 0)
    return Query(tuple(terms), s)


def _label(tok: _Tok) -> str:
    return tok.value + ":" if tok.kind == "weight" else tok.value


def _terms_of(toks: list[_Tok], s: str) -> list[Term]:
    tok = toks[0]
    if tok.kind == "quoted":
        value = tok.value.strip()
        if not value:
            raise QueryError("empty quotes", s, tok.pos)
        return [_classify(value, s, tok.pos, whole=True) or Term(TEXT, value, pos=tok.pos)]
    if tok.kind == "special":
        if _URL.match(tok.value):
            return [Term(URL, tok.value, pos=tok.pos)]
        kind, _, value = tok.value.partition(":")
        return [_prefixed(PREFIXES[kind], value.strip(), s, tok.pos)]
    return _run_terms(toks, s)


def _run_terms(words: list[_Tok], s: str) -> list[Term]:
    """A run of bare words -> image terms for the (multi-word) paths of existing image files, text for the rest."""
    pieces: list[_Tok | Term] = []  # a word that stays text, or an image term
    i = 0
    while i < len(words):
        found = None
        for j in range(min(len(words), i + MAX_PATH_WORDS), i, -1):
            path = _image_file(s[words[i].pos:words[j - 1].end])
            if path:
                found = (j, Term(IMAGE, path, pos=words[i].pos))
                break
        pieces.append(found[1] if found else words[i])
        i = found[0] if found else i + 1
    whole = s[words[0].pos:words[-1].end]
    if len(words) > 1 and all(isinstance(p, _Tok) for p in pieces) and whole.startswith(("/", "~", ".")):
        _classify(whole, s, words[0].pos, whole=True)  # a missing image or a folder named by a spaced path
    out: list[Term] = []
    text: list[_Tok] = []
    for piece in pieces + [None]:
        if isinstance(piece, _Tok):
            _classify(piece.value, s, piece.pos, whole=len(words) == 1)  # raises for a missing image path
            text.append(piece)
            continue
        if text:
            out.append(Term(TEXT, s[text[0].pos:text[-1].end], pos=text[0].pos))
            text = []
        if piece is not None:
            out.append(piece)
    return out
