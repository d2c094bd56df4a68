"""What the built-in store does for search (mixed into SQLiteStore): filters and hard tags compiled to SQL and
cached id sets (sqlfilters.py, allowed.py), the vector ranking over the memory-mapped vector table or the
approximate index (nearest.py, ann.py), keyword search in FTS5 (fts.py), browsing by date with keyset paging,
and the field and tag listings the interfaces show."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..request import Filter
from . import ann, fts
from .allowed import Allowed, allowed_ids
from .base import Candidates, Page, Selection, make_cursor, parse_cursor
from .filters import no_image_has, no_match_message
from .nearest import vector_candidates
from .sqlfilters import EVERYTHING, Condition, FilterContext, all_of, compile_filter, compile_filters, tag_condition
from .vectorcache import VectorTable
from .words import close_words, read_variants

WIDE = 20  # with filters, keyword search first looks at this many times more unfiltered matches
# What browsing orders by: the date the photo was taken (its first 19 characters: local time as written), else the
# file's modification time (UTC); never NULL (mtime_ns is not). An index on it (schema version 5) makes each page a
# short range scan.
BROWSE_KEY = ("coalesce(substr(taken_at, 1, 19), strftime('%Y-%m-%dT%H:%M:%S', mtime_ns / 1000000000, "
              "'unixepoch'))")


class SQLiteSearch:
    """The search half of the Store protocol for SQLiteStore (which provides _conn, read, folder, vector_table)."""

    folder: Path
    label = "the built-in store"
    url = "built-in"
    _vocabulary: tuple[tuple, list[str]] | None = None  # (change_stamp, the words read in images), _ocr_vocabulary

    # -- fields and tags ----------------------------------------------------------------------------------------
    def field_keys(self) -> list[str]:
        return [r[0] for r in self.read("SELECT DISTINCT key FROM fields ORDER BY key")]

    def _field_key(self, name: str) -> str | None:
        """The stored key for a field name: exact, else case-insensitive; None when no image has it."""
        if self.read("SELECT 1 FROM fields WHERE key = ? LIMIT 1", (name,)):
            return name
        row = self.read("SELECT key FROM fields WHERE key = ? COLLATE NOCASE LIMIT 1", (name,))
        return row[0][0] if row else None

    def tag_counts(self) -> dict[str, int]:
        rows = self.read("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY count(*) DESC, tag")
        return {r[0]: r[1] for r in rows}

    # -- selection ------------------------------------------------------------------------------------------------
    def _context(self, cwd: str) -> FilterContext:
        return FilterContext(roots=self.roots(), field_key=self._field_key, field_names=self.field_keys,
                             cwd=cwd or os.getcwd(), text_match=self._text_match, has_texts=self._has_texts())

    def _has_texts(self) -> bool:
        return bool(self.read("SELECT 1 FROM sqlite_master WHERE name = 'texts'"))

    def _ocr_vocabulary(self) -> list[str]:
        """Every word read in the library's images (unstemmed, folded), kept while the database does not change
        (change_stamp: a write through this store, or another connection's commit)."""
        stamp, cached = self.change_stamp(), self._vocabulary
        if cached is None or cached[0] != stamp:
            cached = self._vocabulary = (stamp, self._read_vocabulary())
        return cached[1]

    def _read_vocabulary(self) -> list[str]:
        terms = self.read("SELECT term FROM ocr_vocab") if self._has_texts() else []  # (a read-only older one)
        return [r[0] for r in terms]

    def _text_match(self, words: list[str]) -> str | None:
        """An ocr_words MATCH expression: every word, each as any recognised word close to it (words.close_to,
        found in the vocabulary of recognised words); None when a word has none."""
        vocabulary = self._ocr_vocabulary()
        groups = []
        for word in words:
            close = close_words(word, vocabulary)
            if not close:
                return None
            groups.append("(" + " OR ".join(fts.quote(t) for t in close) + ")")
        return " AND ".join(groups)

    def select(self, where: Sequence[Filter], tags: Sequence[str], excluded_tags: Sequence[str],
               cwd: str = "") -> Selection:
        cond = all_of([compile_filters(where, self._context(cwd)) if where else EVERYTHING,
                       tag_condition(tags, excluded_tags)])
        allowed = allowed_ids(self, cond)
        return Selection(everything=allowed is None, empty=allowed is not None and allowed.none_included,
                         native=(cond, allowed))

    def explain_no_match(self, where: Sequence[Filter], tags: Sequence[str], excluded_tags: Sequence[str],
                         cwd: str = "") -> str:
        """Which filter or tag matches nothing on its own (or that only their combination does)."""
        ctx, empty = self._context(cwd), []
        for f in where:
            c = compile_filter(f, ctx)
            if not self.read(f"SELECT 1 FROM images WHERE {c.sql} LIMIT 1", c.params):
                empty.append(no_image_has(f))
        for tag in tags:
            if not self.read("SELECT 1 FROM tags WHERE tag = ? LIMIT 1", (tag,)):
                empty.append(f"no image is tagged {tag!r}")
        return no_match_message(empty, where, tags, excluded_tags)

    # -- ranking --------------------------------------------------------------------------------------------------
    def nearest(self, space: str, vector: np.ndarray, k: int, selection: Selection,
                ann_threshold: int = 0) -> Candidates:
        _, allowed = _native(selection)
        return vector_candidates(self.folder, space, self.vector_table(space), vector,
                                 None if allowed is None else allowed.mask, k, ann_threshold)

    def keyword_ids(self, words: str, negative: str, selection: Selection, k: int, every: bool = False) -> list[int]:
        """The best `k` keyword matches among the allowed images (FTS5, bm25); with `every`, of those that hold
        every positive word (fts.match_expression's `read_of`). With a condition, the unfiltered best WIDE x k are
        filtered in numpy; only when that leaves too few does SQL apply the condition itself."""
        vocabulary = self._ocr_vocabulary()
        if every:
            match = fts.match_expression(words, negative, read_of=lambda word: read_variants(word, vocabulary))
        else:
            match = fts.match_expression(words, negative, read_variants(words, vocabulary))
        if match is None:
            return []
        cond, allowed = _native(selection)
        if allowed is None:
            return self.read_ids(fts.keyword_sql("1"), (match, k)).tolist()
        wide = k * WIDE
        ids = self.read_ids(fts.keyword_sql("1"), (match, wide))
        kept = ids[allowed.mask(ids)] if len(ids) else ids
        if len(kept) >= k or len(ids) < wide:
            return kept[:k].tolist()
        return self.read_ids(fts.keyword_sql(cond.sql), (match, *cond.params, k)).tolist()

    def prepare_search(self, spaces: Sequence[str], ann_threshold: int) -> None:
        """During and after an index run: bring each large space's approximate index in step now (ann.py: built
        or trained when the space crossed a size, rows added, saved), so that no search waits for it."""
        if ann_threshold <= 0:
            return
        for space in spaces:
            table: VectorTable = self.vector_table(space)
            if table.rows >= ann_threshold:
                ann.index_for(self.folder, space, table, build=True)

    # -- browsing -------------------------------------------------------------------------------------------------
    def browse(self, selection: Selection, limit: int, after: str | None = None) -> Page:
        """The allowed images newest first (BROWSE_KEY, then id), `limit` per page; `after`: the cursor a page
        handed out (keyset paging: a page costs the same however deep it is)."""
        _, allowed = _native(selection)
        position = parse_cursor(after) if after else None
        items: list[tuple[int, str | None]] = []
        batch = max(limit, 50)
        while True:
            sql, params = f"SELECT id, {BROWSE_KEY} FROM images", ()
            if position:
                key, image_id = position  # (the form SQLite answers with a range of the index)
                sql, params = sql + f" WHERE {BROWSE_KEY} <= ? AND ({BROWSE_KEY} < ? OR id < ?)", (key, key, image_id)
            rows = self.read(sql + f" ORDER BY {BROWSE_KEY} DESC, id DESC LIMIT ?", (*params, batch))
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            keep = allowed.mask(ids) if allowed is not None and len(ids) else np.ones(len(rows), bool)
            for (image_id, key), ok in zip(rows, keep):
                if ok:
                    items.append((image_id, key))
                    if len(items) == limit:
                        return Page(items, make_cursor(key, image_id))
            if len(rows) < batch:
                return Page(items, None)
            position = (rows[-1][1], rows[-1][0])
            batch = min(batch * 4, 20_000)


def _native(selection: Selection) -> tuple[Condition, Allowed | None]:
    return selection.native if selection.native is not None else (EVERYTHING, None)
