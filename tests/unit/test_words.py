"""Keyword search reads the same fields in every store: store/words.is_searched_field (what the ChromaDB store puts
in its keyword lines) says what the built-in store's FTS5 view selects in SQL (store/fts.py, a frozen migration)."""
import sqlite3

from picseek.store import fts
from picseek.store.words import SEARCHED_FIELDS, is_searched_field, query_words

KEYS = sorted(SEARCHED_FIELDS) + ["Description", "image_caption", "Title", "subtitle", "ALT", "photographer_name",
                                  "url", "rating", "camera", "width", "keyword", "notes2", "headlines", "cityname"]


def test_searched_fields_agree_with_the_fts_view():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE f (key TEXT)")
    conn.executemany("INSERT INTO f VALUES (?)", [(k,) for k in KEYS])
    by_sql = {r[0] for r in conn.execute(f"SELECT key FROM f WHERE {fts._FIELD_KEYS.format(f='f')}")}
    by_python = {k for k in KEYS if is_searched_field(k)}
    assert by_python == by_sql
    assert {"Description", "image_caption", "subtitle", "ALT"} <= by_python and "url" not in by_python


def test_query_words_drop_stop_words_unless_nothing_else_is_left():
    assert query_words("a dog on the beach", "the sea") == (["dog", "beach"], ["sea"])
    assert query_words("the", "") == (["the"], [])
    assert fts.match_expression("a dog", "sea") == '("dog") NOT ("sea")'
