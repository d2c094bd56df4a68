"""Keyword search: an SQLite FTS5 table over each image's file name, folder name, text fields and tags.

`search_text` (rowid = image id) is filled from the view `search_text_source` and kept in step by triggers on
images, fields and tags, so every writer (indexing, metadata import, tagging, removal) updates it in the same
transaction. Searched fields: text values of keys that say description, caption, title, keywords, subject, alt
text, location, place, city, country, photographer, label, comment, notes or headline. Words are stemmed (Porter)
and accents folded.

MIGRATION is schema version 3 of the store as shipped: never edit it; change things with a new migration. It also
makes the fields indexes covering (filters read image ids from the index alone) and indexes width, height and
taken_at for filters. TEXT_MIGRATION (the words read in images) adds a fifth column, `text`, and the tables of the
`text:` filter.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from .words import query_words

_FIELD_KEYS = """(lower({f}.key) IN ('keywords', 'subject', 'location', 'place', 'city', 'country', 'photographer',
                          'label', 'labels', 'comment', 'comments', 'notes', 'headline', 'alt', 'alt_text')
        OR lower({f}.key) LIKE '%description%' OR lower({f}.key) LIKE '%caption%' OR lower({f}.key) LIKE '%title%')"""
_NEW_FIELD = _FIELD_KEYS.format(f="NEW")  # only changes to searched fields refresh the search text
_OLD_FIELD = _FIELD_KEYS.format(f="OLD")
_DIR = "rtrim(rtrim(i.path, replace(i.path, '/', '')), '/')"  # the folder, without a trailing slash
_COLUMNS = ("name", "folder", "fields", "tags")
# VALUES with scalar subqueries: several times faster than INSERT ... SELECT into an FTS5 table
_REFRESH = ("DELETE FROM search_text WHERE rowid = {id}; INSERT INTO search_text (rowid, name, folder, fields, tags) "
            "VALUES ({id}, " + ", ".join(f"(SELECT {c} FROM search_text_source WHERE id = {{id}})" for c in _COLUMNS)
            + ");")
_EXISTS = "EXISTS (SELECT 1 FROM images WHERE id = {id})"  # not while an image's fields go with the image

def _triggers(refresh) -> str:
    """The triggers that keep search_text in step with images, fields and tags (`refresh(id=...)`: the SQL that
    writes one image's row again)."""
    return f"""    CREATE TRIGGER search_text_image_added AFTER INSERT ON images BEGIN {refresh(id='NEW.id')} END;
    CREATE TRIGGER search_text_image_moved AFTER UPDATE OF path ON images BEGIN {refresh(id='NEW.id')} END;
    CREATE TRIGGER search_text_image_removed AFTER DELETE ON images BEGIN
        DELETE FROM search_text WHERE rowid = OLD.id; END;
    CREATE TRIGGER search_text_field_added AFTER INSERT ON fields
        WHEN {_NEW_FIELD} AND {_EXISTS.format(id='NEW.image_id')} BEGIN {refresh(id='NEW.image_id')} END;
    CREATE TRIGGER search_text_field_changed AFTER UPDATE ON fields WHEN {_OLD_FIELD} OR {_NEW_FIELD} BEGIN
        {refresh(id='OLD.image_id')} {refresh(id='NEW.image_id')} END;
    CREATE TRIGGER search_text_field_removed AFTER DELETE ON fields
        WHEN {_OLD_FIELD} AND {_EXISTS.format(id='OLD.image_id')} BEGIN {refresh(id='OLD.image_id')} END;
    CREATE TRIGGER search_text_tag_added AFTER INSERT ON tags WHEN {_EXISTS.format(id='NEW.image_id')} BEGIN
        {refresh(id='NEW.image_id')} END;
    CREATE TRIGGER search_text_tag_changed AFTER UPDATE ON tags BEGIN
        {refresh(id='OLD.image_id')} {refresh(id='NEW.image_id')} END;
    CREATE TRIGGER search_text_tag_removed AFTER DELETE ON tags WHEN {_EXISTS.format(id='OLD.image_id')} BEGIN
        {refresh(id='OLD.image_id')} END;
"""

MIGRATION = f"""
    DROP INDEX fields_key_value;
    DROP INDEX fields_key_num;
    CREATE INDEX fields_key_value ON fields(key, value, image_id);
    CREATE INDEX fields_key_num ON fields(key, num, image_id);
    CREATE INDEX images_width ON images(width);
    CREATE INDEX images_height ON images(height);
    CREATE INDEX images_taken ON images(taken_at);
    CREATE VIRTUAL TABLE search_text USING fts5(
        name, folder, fields, tags, tokenize = 'porter unicode61 remove_diacritics 2');
    CREATE VIEW search_text_source AS SELECT i.id AS id,
        substr(i.path, length(rtrim(i.path, replace(i.path, '/', ''))) + 1) AS name,
        substr({_DIR}, length(rtrim({_DIR}, replace({_DIR}, '/', ''))) + 1) AS folder,
        coalesce((SELECT group_concat(f.value, ' ') FROM fields f WHERE f.image_id = i.id AND f.num IS NULL
                  AND {_FIELD_KEYS.format(f='f')}), '') AS fields,
        coalesce((SELECT group_concat(t.tag, ' ') FROM tags t WHERE t.image_id = i.id), '') AS tags
        FROM images i;
    INSERT INTO search_text (rowid, name, folder, fields, tags) SELECT * FROM search_text_source;
""" + _triggers(_REFRESH.format)


# Schema version 6 (words read in images, OCR): `texts` (one row per image that was read, even when nothing was
# found, so it is not read again), and search_text made again with a fifth column, `text`, fed from it; `ocr_words`
# (the words as read: no stemming) with its vocabulary `ocr_vocab` for the `text:` filter, which matches words
# within a few OCR errors of the ones asked for (store/words.close_words).
_TEXT_COLUMNS = _COLUMNS + ("text",)
_TEXT_REFRESH = ("DELETE FROM search_text WHERE rowid = {id}; INSERT INTO search_text (rowid, name, folder, fields, "
                 "tags, text) VALUES ({id}, " + ", ".join(f"(SELECT {c} FROM search_text_source WHERE id = {{id}})"
                                                          for c in _TEXT_COLUMNS) + ");")
_OLD_TRIGGERS = ("image_added", "image_moved", "image_removed", "field_added", "field_changed", "field_removed",
                 "tag_added", "tag_changed", "tag_removed")
TEXT_MIGRATION = "".join(f"DROP TRIGGER search_text_{t};\n" for t in _OLD_TRIGGERS) + f"""
    DROP VIEW search_text_source;
    DROP TABLE search_text;
    CREATE TABLE texts (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        text TEXT NOT NULL, lines TEXT NOT NULL, error TEXT, read_at REAL NOT NULL);
    CREATE VIRTUAL TABLE search_text USING fts5(
        name, folder, fields, tags, text, tokenize = 'porter unicode61 remove_diacritics 2');
    CREATE VIEW search_text_source AS SELECT i.id AS id,
        substr(i.path, length(rtrim(i.path, replace(i.path, '/', ''))) + 1) AS name,
        substr({_DIR}, length(rtrim({_DIR}, replace({_DIR}, '/', ''))) + 1) AS folder,
        coalesce((SELECT group_concat(f.value, ' ') FROM fields f WHERE f.image_id = i.id AND f.num IS NULL
                  AND {_FIELD_KEYS.format(f='f')}), '') AS fields,
        coalesce((SELECT group_concat(t.tag, ' ') FROM tags t WHERE t.image_id = i.id), '') AS tags,
        coalesce((SELECT x.text FROM texts x WHERE x.image_id = i.id), '') AS text
        FROM images i;
    INSERT INTO search_text (rowid, name, folder, fields, tags, text) SELECT * FROM search_text_source;
    CREATE TRIGGER search_text_text_added AFTER INSERT ON texts WHEN {_EXISTS.format(id='NEW.image_id')} BEGIN
        {_TEXT_REFRESH.format(id='NEW.image_id')} END;
    CREATE TRIGGER search_text_text_changed AFTER UPDATE ON texts BEGIN
        {_TEXT_REFRESH.format(id='NEW.image_id')} END;
    CREATE TRIGGER search_text_text_removed AFTER DELETE ON texts WHEN {_EXISTS.format(id='OLD.image_id')} BEGIN
        {_TEXT_REFRESH.format(id='OLD.image_id')} END;
    CREATE VIRTUAL TABLE ocr_words USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
    CREATE VIRTUAL TABLE ocr_vocab USING fts5vocab(ocr_words, 'row');
    CREATE TRIGGER ocr_words_added AFTER INSERT ON texts BEGIN
        INSERT INTO ocr_words (rowid, text) VALUES (NEW.image_id, NEW.text); END;
    CREATE TRIGGER ocr_words_changed AFTER UPDATE ON texts BEGIN
        DELETE FROM ocr_words WHERE rowid = OLD.image_id;
        INSERT INTO ocr_words (rowid, text) VALUES (NEW.image_id, NEW.text); END;
    CREATE TRIGGER ocr_words_removed AFTER DELETE ON texts BEGIN DELETE FROM ocr_words WHERE rowid = OLD.image_id; END;
""" + _triggers(_TEXT_REFRESH.format)


def match_expression(positive: str, negative: str = "", read: Sequence[str] = (),
                     read_of: Callable[[str], Sequence[str]] | None = None) -> str | None:
    """An FTS5 MATCH string: any of the positive words, none of the negative ones; None if there is no word.
    `read`: more words to find in the words read in images only (those close to a positive word: words.close_to).
    With `read_of` (a positive word -> its own such words) instead: every positive word, each as itself in any
    column or as one of its read words. Every word is a quoted FTS string, so nothing the user types is read as
    FTS syntax."""
    pos, neg = query_words(positive, negative)
    if not pos:
        return None
    if read_of is None:
        expr = _any_of(pos, read)
    else:
        expr = " AND ".join(f"({_any_of([w], read_of(w))})" for w in pos)
    if neg:
        expr = f"({expr}) NOT ({' OR '.join(quote(w) for w in neg)})"
    return expr


def _any_of(words: Sequence[str], read: Sequence[str]) -> str:
    """Any of `words` in any column, or of `read` in the words read in images."""
    return " OR ".join([quote(w) for w in words] + [f"text : {quote(w)}" for w in read])


def quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


# bm25 weights per column: name, folder, fields, tags, words read in the image
RANK = "bm25(search_text, 1.0, 0.5, 2.0, 2.0, 1.5)"


def keyword_sql(condition_sql: str) -> str:
    """SQL for the ids of images whose text matches (param 1), allowed by `condition_sql`, best first, limited."""
    # `+rowid`: keeps SQLite from handing the id list to FTS5 as one MATCH per id (1000x slower)
    where = "" if condition_sql == "1" else f" AND +rowid IN (SELECT id FROM images WHERE {condition_sql})"
    return f"SELECT rowid FROM search_text WHERE search_text MATCH ?{where} ORDER BY {RANK} LIMIT ?"
