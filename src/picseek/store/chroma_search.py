"""What the ChromaDB store does for search (mixed into ChromaStore): filters and hard tags compiled to ChromaDB's
`where` (metadata) and `where_document` (the record document of chroma_records.py) conditions, the nearest
neighbours in ChromaDB's index among the images that pass, keyword search over the documents' keyword lines, and
browsing by date.

Filters mean what they mean in the built-in store (store/filters.py): numbers and dates compare on metadata
(`pid`, `width`, ..., `taken_days`, `taken_y/m/d`, and `n:KEY` for imported fields); text, tags and folders match
the document's lines with regular expressions (values escaped, lower case, so `=` and `~` ignore case as in the
built-in store). `!=` keeps images that lack the value.

Keyword search: ChromaDB (the open-source server and embedded folder) filters by document text but does not rank
by it, so picseek ranks here: the records whose keyword lines hold a stem of any query word (at most KEYWORD_SCAN,
found by ChromaDB among the allowed images) are scored with BM25 over the same columns and weights as the built-in
store's FTS5 ranking (fts.RANK). Document frequencies and lengths come from those records, so scores are close to
the built-in store's, not equal; the order of clearly better matches is the same (tests/contract).
"""
from __future__ import annotations

import math
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from ..models.base import MAIN
from ..request import Filter
from .base import Candidates, Page, Selection, make_cursor, parse_cursor
from .chroma_base import PLACEHOLDER, STATE, chunks, translated
from .chroma_records import HAS_TEXT, KEYWORD_COLUMNS, NUM_PREFIX, browse_key, stem_words
from .filters import (
    DATE,
    FOLDER,
    KINDS,
    OCR,
    PARTIAL_DATE,
    TAG,
    YES_NO,
    bad,
    builtin_key,
    check_text_op,
    date_range,
    field_compares_as_number,
    folder_prefixes,
    looks_like_date,
    no_contains_for_numbers,
    no_image_has,
    no_match_message,
    ocr_words,
    tag_value,
    unknown_key,
    value_range,
    yes_no,
)
from .values import field_number
from .words import close_words, query_words, read_variants

NUMBER_KEYS = {"width": "width", "height": "height", "size": "size", "id": "pid", "orientation": "orientation",
               "gps_lat": "gps_lat", "gps_lon": "gps_lon"}
_OPS = {"=": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")
NOTHING = {"pid": {"$lt": 0}}  # a condition no image passes
KEYWORD_SCAN = 5000  # keyword matches scored per search at most
COLUMN_WEIGHTS = {"name": 1.0, "folder": 0.5, "fields": 2.0, "tags": 2.0, "text": 1.5}  # as fts.RANK
BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25 constants
TYPICAL_SAMPLE = 2000  # records whose scores give the background of the adaptive cut-off
TEXTS_STAMP = "texts"  # the state record whose stamp changes with every write of words read in images


def regex_literal(text: str) -> str:
    """A literal for ChromaDB's regular expressions (the same set of characters its regex engine escapes)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def line_is(line: str, value: str) -> dict:
    return {"$regex": f"(?m)^{regex_literal(line)}:{regex_literal(value.lower())}$"}


def _line_has(line: str, value: str) -> dict:
    return {"$regex": f"(?m)^{regex_literal(line)}:.*{regex_literal(value.lower())}"}


def _negated(cond: dict) -> dict:
    return {"$not_regex": cond["$regex"]}


def _text(f: Filter, line: str) -> dict:
    if f.op == "~":
        return _line_has(line, f.value)
    return _negated(line_is(line, f.value)) if f.op == "!=" else line_is(line, f.value)


def _number(f: Filter, meta_key: str) -> dict:
    no_contains_for_numbers(f)
    num = field_number(f.value)
    if num is None:
        raise bad(f, f"{f.op} needs a number or a date, not {f.value!r}")
    return {meta_key: {_OPS[f.op]: int(num) if num.is_integer() else num}}


def _date(f: Filter) -> dict:
    value = f.value.strip()
    rng = date_range(value)
    if rng is None:
        raise bad(f, f"{f.value!r} is not a date (write 2021, 2021-06 or 2021-06-01)")
    lo, hi = rng
    m = PARTIAL_DATE.match(value)
    if m is None:  # a full date-time: one point in time
        return {"taken_days": {_OPS[f.op]: lo}}
    if f.op in ("=", "!="):  # a whole year, month or day: one key, so != keeps images without a date
        year, month, day = m.groups()
        key, number = ("taken_d", int(lo)) if day else ("taken_m", int(year) * 100 + int(month)) if month else \
            ("taken_y", int(year))
        return {key: {_OPS[f.op]: number}}
    return {"taken_days": _range_bound(f.op, lo, hi)}


def _range_bound(op: str, lo: float, hi: float) -> dict:
    """<, <=, >, >= against a [lo, hi) range (lo == hi: a point)."""
    if lo == hi:
        return {_OPS[op]: lo}
    name, bound = {"<": ("$lt", lo), "<=": ("$lt", hi), ">": ("$gte", hi), ">=": ("$gte", lo)}[op]
    return {name: bound}


def join(op: str, conds: list) -> dict | None:
    conds = [c for c in conds if c]
    return None if not conds else conds[0] if len(conds) == 1 else {op: conds}


class ChromaSearch:
    """The search half of the Store protocol for ChromaStore (which provides _col, _state, _pages, roots, count)."""

    _vocabulary: tuple[str | None, list[str]] | None = None  # (stamp, the words read in images), _ocr_vocabulary

    # -- compiling filters ----------------------------------------------------------------------------------------
    def _compile(self, f: Filter, roots: Sequence[str], cwd: str) -> tuple[dict | None, dict | None]:
        """One filter -> (where, where_document); either may be None."""
        key = builtin_key(f)
        if key is None:
            return self._field(f)
        kind = KINDS[key]
        if kind == TAG:
            value = tag_value(f)
            return None, _text(Filter(f.key, f.op, value, f.raw), "tag")
        if kind == FOLDER:
            return self._folder(f, roots, cwd)
        if kind == OCR:
            return self._ocr_text(f)
        if kind == YES_NO:
            return {HAS_TEXT: {"$eq": True} if yes_no(f) else {"$ne": True}}, None
        if kind == DATE and f.op == "~":
            return None, _text(f, "taken")
        if kind == DATE:
            return _date(f), None
        if key in NUMBER_KEYS:
            return _number(f, NUMBER_KEYS[key]), None
        check_text_op(f)
        return None, _text(f, key)

    def _field(self, f: Filter) -> tuple[dict | None, dict | None]:
        keys = self.field_keys()
        stored = f.key if f.key in keys else next((k for k in keys if k.lower() == f.key.lower()), None)
        if stored is None:
            raise unknown_key(f, keys)
        if not field_compares_as_number(f):
            return None, _text(f, f"field.{stored}")
        lo, hi = value_range(f, looks_like_date(f.value))
        meta = NUM_PREFIX + stored
        if f.op not in ("=", "!="):
            return {meta: _range_bound(f.op, lo, hi)}, None
        inside = {meta: {"$eq": lo}} if lo == hi else {"$and": [{meta: {"$gte": lo}}, {meta: {"$lt": hi}}]}
        if f.op == "=":
            return inside, None
        if lo == hi:
            return {meta: {"$ne": lo}}, None  # ($ne keeps the images without the field)
        matching = [int(i) for page in self._pages(self._col(MAIN), inside, ()) for i in page["ids"]]
        return ({"pid": {"$nin": matching}} if matching else None), None

    def _ocr_text(self, f: Filter) -> tuple[dict | None, dict | None]:
        """Every word, each as any recognised word close to it (words.close_to): the vocabulary is read from the
        `ocr:` lines of the records that have words."""
        words, vocabulary = ocr_words(f), self._ocr_vocabulary()
        patterns = []
        for word in words:
            close = close_words(word, vocabulary)
            if not close:
                return (None if f.op == "!=" else NOTHING), None
            patterns.append(f"(?m)^ocr:(?:.* )?(?:{'|'.join(regex_literal(t) for t in close)})(?: |$)")
        if f.op == "!=":  # not every word there
            return None, join("$or", [{"$not_regex": p} for p in patterns])
        return None, join("$and", [{"$regex": p} for p in patterns])

    def _ocr_vocabulary(self) -> list[str]:
        """Every word read in the images (folded), from the `ocr:` lines of the records that have words; kept while
        the stamp that every write of words changes (_changing_texts) is the same (one small read per search, where
        the vocabulary is a pass over every record with words). Without a stamp (a collection no picseek has
        written words to since stamps were kept) it is read every time."""
        stamp, cached = self._texts_stamp(), self._vocabulary
        if stamp is None or cached is None or cached[0] != stamp:
            cached = self._vocabulary = (stamp, self._read_vocabulary())
        return cached[1]

    def _read_vocabulary(self) -> list[str]:
        vocabulary: set[str] = set()
        for page in self._pages(self._col(MAIN), {HAS_TEXT: {"$eq": True}}, ("documents",)):
            for doc in page["documents"]:
                for line in _OCR_LINE.findall(doc or ""):
                    vocabulary.update(line.split())
        return sorted(vocabulary)

    def _texts_stamp(self) -> str | None:
        state = self._col(STATE)
        got = state.get(ids=[TEXTS_STAMP], include=["metadatas"]) if state is not None else {"ids": []}
        return got["metadatas"][0]["stamp"] if got["ids"] else None

    @contextmanager
    def _changing_texts(self) -> Iterator[SimpleNamespace]:
        """Around a write that may change the words read in the records (records written or removed): afterwards
        (even after a failure part-way) this store forgets its vocabulary and a new random stamp tells every other
        process's store to read it again, unless the write found that no record's words changed (it sets the
        `words` of what this yields to False: another write, ~30 ms in an embedded folder, saved). Random, not a
        counter: two writers never leave the stamp a reader saw, and a reader reads the stamp before the records,
        so it never keeps words older than its stamp."""
        change = SimpleNamespace(words=True)
        try:
            yield change
        finally:
            if change.words:
                self._vocabulary = None
                self._state().upsert(ids=[TEXTS_STAMP], embeddings=[PLACEHOLDER],
                                     metadatas=[{"kind": "texts", "stamp": uuid.uuid4().hex}])

    @staticmethod
    def _folder(f: Filter, roots: Sequence[str], cwd: str) -> tuple[dict | None, dict | None]:
        if f.op == "~":
            return None, _text(f, "folder")
        if f.op not in ("=", "!="):
            raise bad(f, "folder takes = (below this folder), != or ~ (contains)")
        prefixes = list(dict.fromkeys(folder_prefixes(f.value, roots, cwd)))
        if not prefixes:
            return (NOTHING if f.op == "=" else None), None
        op = "$contains" if f.op == "=" else "$not_contains"
        return join("$or" if f.op == "=" else "$and", [{"dirs": {op: p}} for p in prefixes]), None

    def select(self, where: Sequence[Filter], tags: Sequence[str], excluded_tags: Sequence[str],
               cwd: str = "") -> Selection:
        roots = self.roots() if where else []
        parts = [self._compile(f, roots, cwd or os.getcwd()) for f in where]
        docs = [d for _, d in parts] + [line_is("tag", t) for t in tags] + \
            [_negated(line_is("tag", t)) for t in excluded_tags]
        meta, doc = join("$and", [w for w, _ in parts]), join("$and", docs)
        return Selection(everything=meta is None and doc is None, empty=meta is NOTHING, native=(meta, doc))

    @translated
    def explain_no_match(self, where: Sequence[Filter], tags: Sequence[str], excluded_tags: Sequence[str],
                         cwd: str = "") -> str:
        roots, empty = self.roots(), []
        for f in where:
            if not self._any(*self._compile(f, roots, cwd or os.getcwd())):
                empty.append(no_image_has(f))
        for tag in tags:
            if not self._any(None, line_is("tag", tag)):
                empty.append(f"no image is tagged {tag!r}")
        return no_match_message(empty, where, tags, excluded_tags)

    def _any(self, where: dict | None, where_document: dict | None) -> bool:
        main = self._col(MAIN)
        return main is not None and bool(main.get(where=where, where_document=where_document, limit=1,
                                                  include=[])["ids"])

    # -- ranking --------------------------------------------------------------------------------------------------
    @translated
    def nearest(self, space: str, vector: np.ndarray, k: int, selection: Selection,
                ann_threshold: int = 0) -> Candidates:
        """The k nearest images in a space among the allowed ones (ChromaDB's HNSW index; exact for small
        collections), with the scores as cosines."""
        where, doc = selection.native or (None, None)
        q = np.asarray(vector, np.float32)
        col = self._col(space)
        total = col.count() if col is not None else 0
        n = min(int(k), total)
        ids, scores = [], []
        if n > 0 and not selection.empty:
            got = col.query(query_embeddings=[q], n_results=n, where=where, where_document=doc,
                            include=["distances"])
            ids, scores = [int(i) for i in got["ids"][0]], [1.0 - float(d) for d in got["distances"][0]]

        def score_of(wanted: Sequence[int]) -> dict[int, float]:
            out = {}
            for chunk in chunks([str(int(i)) for i in wanted]):
                got = col.get(ids=list(chunk), include=["embeddings"])
                if got["ids"]:
                    out.update(zip(map(int, got["ids"]), (np.asarray(got["embeddings"], np.float32) @ q).tolist()))
            return out

        def typical() -> float:
            got = col.get(where=where, where_document=doc, limit=TYPICAL_SAMPLE, include=["embeddings"])
            return float((np.asarray(got["embeddings"], np.float32) @ q).mean()) if got["ids"] else 0.0

        allowed = total if n and len(ids) == n else len(ids)  # (fewer than asked: the filter allows only these)
        return Candidates(np.asarray(ids, np.int64), np.asarray(scores, np.float32), allowed, True, typical,
                          score_of)

    @translated
    def keyword_ids(self, words: str, negative: str, selection: Selection, k: int, every: bool = False) -> list[int]:
        """The best `k` of the allowed records whose keyword lines hold a stem of a query word or of a word read
        in images close to one (BM25, _bm25); with `every`, of those that hold, for every query word, its stem
        or one of its read words' stems."""
        pos, neg = query_words(words, negative)
        vocabulary = self._ocr_vocabulary()
        read = read_variants(words, vocabulary)  # (words read in images close to a query word)
        stems = _stems(pos + read)
        if not stems or self._col(MAIN) is None:
            return []
        no = _stems(neg)
        where, doc = selection.native or (None, None)
        wanted = _any_stem(stems)
        if every:
            groups = [_any_stem(_stems([w] + read_variants(w, vocabulary))) for w in pos]
            if None in groups:  # (a word without a stem is held by no record)
                return []
            wanted = join("$and", groups)
        doc = join("$and", [doc, wanted] + [{"$not_regex": _stem_pattern(s)} for s in no])
        got = self._col(MAIN).get(where=where, where_document=doc, limit=KEYWORD_SCAN, include=["documents"])
        return _bm25(got["ids"], got["documents"], stems, max(self.count(), 1))[:k]

    def prepare_search(self, spaces: Sequence[str], ann_threshold: int) -> None:
        """Nothing to prepare: ChromaDB keeps its index in step as records are written."""

    # -- browsing -------------------------------------------------------------------------------------------------
    @translated
    def browse(self, selection: Selection, limit: int, after: str | None = None) -> Page:
        """The allowed images newest first (taken date, else file time; then id). ChromaDB cannot sort, so every
        allowed record's date is read and sorted here: a page costs a pass over the allowed records."""
        where, doc = selection.native or (None, None)
        keyed = sorted(((browse_key(m), int(m["pid"])) for page in self._pages(self._col(MAIN), where, ("metadatas",),
                                                                                 doc) for m in page["metadatas"]),
                       reverse=True)
        if after:
            position = parse_cursor(after)
            keyed = [item for item in keyed if item < position]
        items = [(i, key) for key, i in keyed[:limit]]
        more = len(keyed) > limit
        return Page(items, make_cursor(*items[-1][::-1]) if more and items else None)


def _stems(words: list[str]) -> list[str]:
    """The distinct Porter stems of some words."""
    return list(dict.fromkeys(s for s in stem_words(" ".join(words)) if s))


def _any_stem(stems: list[str]) -> dict | None:
    """A where_document condition: a keyword line holds one of the stems."""
    return join("$or", [{"$regex": _stem_pattern(s)} for s in stems])


def _stem_pattern(stem: str) -> str:
    """A keyword line that holds the stem as a whole word."""
    return f"(?m)^kw\\.[a-z]+:(?:.* )?{regex_literal(stem)}(?: |$)"


def _bm25(ids: list[str], docs: list[str], stems: list[str], total: int) -> list[int]:
    """Ids best first by BM25 over the keyword columns (weights as fts.RANK), from the matched records."""
    columns = [_keyword_columns(d) for d in docs]
    if not columns:
        return []
    avg = {c: (sum(len(cols[c]) for cols in columns) / len(columns)) or 1.0 for c in KEYWORD_COLUMNS}
    df = Counter(s for cols in columns for s in stems if any(s in words for words in cols.values()))
    scored = []
    for image_id, cols in zip(ids, columns):
        score = 0.0
        for s in stems:
            idf = math.log(1 + (total - df[s] + 0.5) / (df[s] + 0.5))
            for c, words in cols.items():
                tf = words.count(s)
                if tf:
                    norm = tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(words) / avg[c]))
                    score += COLUMN_WEIGHTS[c] * idf * norm
        scored.append((-score, int(image_id)))
    return [i for _, i in sorted(scored)]


_KEYWORD_LINE = re.compile(r"^kw\.([a-z]+):(.*)$", re.M)
_OCR_LINE = re.compile(r"^ocr:(.*)$", re.M)


def _keyword_columns(doc: str) -> dict[str, list[str]]:
    cols = {c: [] for c in KEYWORD_COLUMNS}
    for col, text in _KEYWORD_LINE.findall(doc or ""):
        if col in cols:
            cols[col] = text.split()
    return cols
