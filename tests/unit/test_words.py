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


def test_recognised_words_match_within_a_few_reading_errors():
    from picseek.store.words import close_to, close_words, line_matches, text_words

    assert close_to("revenue", "revenue") and close_to("revenue", "revenu") and close_to("revenue", "rcvcnue")
    assert not close_to("revenue", "paper") and not close_to("cat", "cot")  # 3 letters: no error allowed
    assert close_to("grocery", "grocerystore") and close_to("gr0cery", "grocerystore")  # lost spaces
    assert close_to("tow", "towawayzone") and close_to("due", "totaldue42") and not close_to("cat", "education")
    assert close_to("42", "totaldue42") and close_to("320", "320") and not close_to("20", "320")
    assert not close_to("2024", "2025") and close_to("2024", "q2024")
    assert close_words("parking", ["parking", "noparking", "park", "barking", "zone"]) == ["parking", "noparking",
                                                                                          "barking"]
    assert text_words("The Café, TOTAL") == ["cafe", "total"]
    assert line_matches("Total due: 42.50", ["total"]) and not line_matches("Thank you", ["total"])


def test_keyword_columns_and_weights_agree_between_the_stores():
    from picseek.store import chroma_records, chroma_search

    assert chroma_records.KEYWORD_COLUMNS == fts._TEXT_COLUMNS
    weights = [float(w) for w in fts.RANK.removesuffix(")").split(",")[1:]]
    assert [chroma_search.COLUMN_WEIGHTS[c] for c in chroma_records.KEYWORD_COLUMNS] == weights
