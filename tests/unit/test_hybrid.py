"""Keyword search (FTS5) kept in step with images, fields and tags, its safe match expressions, the schema 2 -> 3
migration, and reciprocal rank fusion with the vector ranking."""
import sqlite3

import numpy as np
import pytest

from picseek.query.rank import fuse
from picseek.store import fts
from picseek.store.base import ImageRecord
from picseek.store.sqlite import MIGRATIONS, SQLiteStore


def text_of(store, image_id):
    rows = store.read("SELECT name, folder, fields, tags FROM search_text WHERE rowid = ?", (image_id,))
    return tuple(rows[0]) if rows else None


def matches(store, words):
    match = fts.match_expression(words)
    return sorted(store.read_ids(fts.keyword_sql("1"), (match, 100)).tolist()) if match else []


def record(path, n=0):
    return ImageRecord(path, 1, n, "h", {}, {"main": np.ones(4, np.float32) / 2})


def test_search_text_follows_every_change(tmp_path):
    s = SQLiteStore(tmp_path / "lib")
    s.write_images([record("/p/Summer Trip/IMG_0042.jpg"), record("/p/x/dog_beach.png", 1)])
    a, b = sorted(r["id"] for r in s.get_images([1, 2]).values())
    assert text_of(s, a) == ("IMG_0042.jpg", "Summer Trip", "", "")
    assert matches(s, "summer") == [a] and matches(s, "beach") == [b] and matches(s, "dogs") == [b]  # stemmed
    s.set_fields([(a, {"description": "Kayaks on a lake", "photographer": "Alec Weir", "width_px": 4000,
                       "secret": "zebra"})])
    assert matches(s, "kayak") == [a] and matches(s, "weir") == [a]
    assert matches(s, "zebra") == [] and matches(s, "4000") == []  # not a searched field / a number
    s.set_fields([(a, {"description": "A canoe"})])
    assert matches(s, "kayaks") == [] and matches(s, "canoe") == [a]
    s.set_fields([(a, {"description": None})])
    assert matches(s, "canoe") == []
    s.add_tags([(b, "Sunset", "user", None)])
    assert matches(s, "sunset") == [b]
    s.remove_tags([b], ["sunset"])
    assert matches(s, "sunset") == []
    s.move([(b, "/p/y/cat.png", 1, 1)])
    assert matches(s, "dog") == [] and matches(s, "cat") == [b]
    s.delete_paths(["/p/y/cat.png"])
    assert text_of(s, b) is None and s.read("SELECT count(*) FROM search_text")[0][0] == 1
    s.write_images([record("/p/Summer Trip/IMG_0042.jpg", 5)])  # re-indexed: same id, fields kept
    assert matches(s, "weir") == [a]
    s.clear_vectors()
    assert s.read("SELECT count(*) FROM search_text")[0][0] == 0


def test_a_version_2_library_gets_its_search_text_on_upgrade(tmp_path):
    db = tmp_path / "lib" / "picseek.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("INSERT INTO images (id, path, size, mtime_ns, content_hash, indexed_at) "
                 "VALUES (7, '/p/old/lighthouse.jpg', 1, 1, 'h', 0)")
    conn.execute("INSERT INTO fields VALUES (7, 'caption', 'Foggy morning', NULL, 'import')")
    conn.execute("INSERT INTO tags VALUES (7, 'coast', 'user', NULL)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    s = SQLiteStore(tmp_path / "lib")
    assert s.read("PRAGMA user_version")[0][0] == len(MIGRATIONS) >= 3
    assert text_of(s, 7) == ("lighthouse.jpg", "old", "Foggy morning", "coast")
    assert matches(s, "foggy lighthouse") == [7]


@pytest.mark.parametrize("hostile", ['"', 'a" OR "b', "NEAR(a b)", "a*", "^start", "col:value", "AND", "-x",
                                     "(", "a NOT b", "'; DROP TABLE images; --", "東京", ""])
def test_match_expressions_are_safe_for_any_input(tmp_path, hostile):
    s = SQLiteStore(tmp_path / "lib")
    s.write_images([record("/p/a.jpg")])
    for expr in (fts.match_expression(hostile, hostile, [hostile]),
                 fts.match_expression(hostile + " x", hostile, read_of=lambda word: [hostile, word])):
        if expr is not None:
            s.read_ids(fts.keyword_sql("1"), (expr, 10))  # never an FTS syntax error
    assert s.count() == 1


def test_match_expression_drops_stop_words_and_excludes_negatives():
    assert fts.match_expression("a dog on the beach") == '"dog" OR "beach"'
    assert fts.match_expression("the") == '"the"'
    assert fts.match_expression("dog", "the cats") == '("dog") NOT ("cats")'
    assert fts.match_expression("!!!") is None


def test_match_expression_for_every_word_groups_each_word_with_its_read_variants():
    variants = {"dog": ["dg", "doq"], "beach": []}
    assert fts.match_expression("a dog on the beach", read_of=variants.get) == (
        '("dog" OR text : "dg" OR text : "doq") AND ("beach")')
    assert fts.match_expression("dog", "the cats", read_of=variants.get) == (
        '(("dog" OR text : "dg" OR text : "doq")) NOT ("cats")')
    assert fts.match_expression("!!!", read_of=variants.get) is None


def test_fuse_is_reciprocal_rank_fusion():
    assert fuse([1, 2, 3], [], 1.0) == [1, 2, 3]
    assert fuse([1, 2, 3], [3], 1.0) == [3, 1, 2]  # 1/63 + 1/61 beats 1/61
    assert fuse([1, 2, 3], [3], 0.01) == [1, 2, 3]
    assert fuse([1, 2], [9, 2], 1.0) == [2, 1, 9]
    # the matches holding every word count once more: 9 (keyword rank 2, no vector) passes 3 (keyword rank 1)
    assert fuse([1, 2, 3], [3, 9], 1.0) == [3, 1, 2, 9]
    assert fuse([1, 2, 3], [3, 9], 1.0, every=[9]) == [9, 3, 1, 2]


@pytest.fixture
def lib(colour_lib):
    return colour_lib  # (tests/conftest.py)


def test_keywords_lift_a_described_image_and_can_be_turned_off(lib):
    plain = lib.search("red umbrella", limit=8, keywords=False)
    target = plain[-1]  # the image least like "red"
    lib.store.set_fields([(target.id, {"description": "A big umbrella in the rain"})])
    assert [h.id for h in lib.search("red umbrella", limit=8, keywords=False)] == [h.id for h in plain]
    fused = lib.search("red umbrella", limit=8)
    assert fused[0].id == target.id and fused[0].score == target.score  # the score stays the cosine
    assert fused[0].fields == {"description": "A big umbrella in the rain"}
    assert lib.search("red umbrella", limit=8, keywords=0.001)[0].id == plain[0].id
    assert lib.search("red - umbrella", limit=8)[0].id != target.id  # a negative word never lifts


def test_an_image_holding_every_word_outranks_closer_ones_holding_one(lib, monkeypatch):
    plain = lib.search("red umbrella", limit=8, keywords=False)
    both, one = plain[-1], plain[0]  # the image least like "red" shows both words; the closest only one
    lib.store.set_fields([(both.id, {"description": "red umbrella"}), (one.id, {"title": "umbrella"})])
    calls, real = [], lib.store.keyword_ids
    monkeypatch.setattr(lib.store, "keyword_ids", lambda *a, **kw: calls.append((a[0], kw)) or real(*a, **kw))
    fused = lib.search("red umbrella", limit=8)
    assert calls == [("red umbrella", {}), ("red umbrella", {"every": True})]  # one call asks for every word
    assert fused[0].id == both.id and fused[0].via == "vector+keyword"  # (fused once: the closest one first)
    assert fused[1].id == one.id and fused[1].via == "vector+keyword"


def test_keywords_do_not_reorder_a_query_with_an_example_image(lib):
    plain = lib.search("red umbrella", limit=8, keywords=False)
    example = plain[0]
    lib.store.set_fields([(plain[-1].id, {"description": "A big umbrella in the rain"})])
    mixed = lib.search(f"id:{example.id} + umbrella", limit=8)
    assert mixed == sorted(mixed, key=lambda h: -h.score)  # vector order: no keyword hit jumps the queue
    assert lib.search("umbrella", limit=8)[0].id == plain[-1].id  # text alone still uses the keywords


def test_keyword_only_hits_respect_filters_and_threshold(lib):
    hits = lib.search("red", limit=3, keywords=False)
    lib.store.set_fields([(hits[-1].id, {"title": "purple"})])
    with_kw = lib.search("purple", limit=8, where=[f"id!={hits[-1].id}"])
    assert hits[-1].id not in [h.id for h in with_kw]
    floor = lib.search("purple", limit=1, keywords=False)[0].score
    assert all(h.score >= floor for h in lib.search("purple", limit=8, threshold=floor))


def test_tags_match_as_keywords_and_as_filters(lib):
    ids = [h.id for h in lib.search("blue", limit=8, keywords=False)]
    lib.tag_add(ids[-1], ["harbour"])
    lib.tag_add(ids[-2], ["harbour", "night"])
    assert [h.id for h in lib.search("tag:harbour", limit=8)] == sorted(
        ids[-2:], key=lambda i: [h.id for h in lib.search("harbour", limit=8, keywords=False)].index(i))
    assert [h.id for h in lib.search("tag:harbour tag:night")] == [ids[-2]]
    assert [h.id for h in lib.search("tag:harbour - tag:night")] == [ids[-1]]
    soft = lib.search("blue + tag:harbour", limit=8, soft_tags=True)
    assert len(soft) == 8  # soft tags rank, they do not filter
