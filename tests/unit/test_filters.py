"""--where filters: parsing, SQL compilation (always parameterised), dates/numbers/text/folders/tags/fields, and
filtered vector search equal to a brute-force ranking of the allowed rows."""
import numpy as np
import pytest

from picseek import Library
from picseek.errors import UsageError
from picseek.models.base import l2_normalize
from picseek.request import Filter
from picseek.store.allowed import allowed_ids
from picseek.store.base import ImageRecord
from picseek.store.filters import date_range, parse_filter
from picseek.store.sqlfilters import compile_filters
from picseek.store.sqlite import SQLiteStore

from conftest import ColourEmbedder, make_folder

HOSTILE = ["'; DROP TABLE images; --", "%", "_", "a%b", "\"", "'", "O'Brien", "Zoë 東京", "\\", "*", "?)",
           "1; DELETE FROM fields"]

ROWS = [  # path, taken_at, width, make, model, fields
    ("/lib/trips/2021/a.jpg", "2021-06-01T00:30:00+02:00", 4000, "Canon", "Canon EOS R5",
     {"photographer": "Alec Weir", "description": "A dog on a beach", "source_width": 4000, "shot": "2021-06-02"}),
    ("/lib/trips/2021/b.jpg", "2021-05-31T23:59:59", 1024, "NIKON CORPORATION", "NIKON D750",
     {"photographer": "Zoë Müller", "description": "Snowy mountains 100% pure", "source_width": 1024}),
    ("/lib/trips/2022/c.jpg", "2022-01-15T12:00:00", 800, None, None, {"description": "city_at_night"}),
    ("/lib/home/d.jpg", None, 3000, "canon", "PowerShot", {"photographer": "O'Brien"}),
    ("/lib/tripsX/e.jpg", "2021-06-30T10:00:00", 640, None, None, {}),
    ("/other/trips/f.jpg", "2020-12-31T23:00:00", 2048, None, None, {"photographer": "'; DROP TABLE images; --"}),
]


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "lib")
    rng = np.random.default_rng(0)
    s.write_images([ImageRecord(p, 1000 + n, n, f"h{n}", {"taken_at": t, "width": w, "height": w // 2,
                                                          "camera_make": mk, "camera_model": md},
                                {"main": l2_normalize(rng.normal(size=8))})
                    for n, (p, t, w, mk, md, _) in enumerate(ROWS)])
    ids = {r["path"]: r["id"] for r in s.get_images(range(1, 100)).values()}
    s.set_fields([(ids[p], f) for p, *_, f in ROWS if f])
    s.add_tags([(ids["/lib/trips/2021/a.jpg"], "beach", "user", None), (ids["/lib/home/d.jpg"], "beach", "auto", 0.5),
                (ids["/lib/home/d.jpg"], "Bear", "user", None)])
    run = s.start_run(["/lib"])
    s.finish_run(run, "completed", {})
    return s


def allowed(store, filters, cwd="/") -> list[int]:
    """The ids the filters allow, computed both ways: SQL condition over images, and id sets + numpy mask."""
    ctx = store._context(cwd)
    cond = compile_filters([parse_filter(f) for f in filters], ctx)
    by_sql = store.read_ids(f"SELECT id FROM images WHERE {cond.sql} ORDER BY id", cond.params).tolist()
    every = store.read_ids("SELECT id FROM images ORDER BY id")
    sets = allowed_ids(store, cond)
    by_sets = every[sets.mask(every)].tolist() if sets is not None else every.tolist()
    assert by_sql == by_sets, filters
    return by_sql


def names(store, *filters, cwd="/"):
    rows = store.get_images(allowed(store, filters, cwd))
    return sorted(r["path"].rsplit("/", 1)[1][0] for r in rows.values())


@pytest.mark.parametrize("text, parsed", [
    ("taken>=2021-06-01", ("taken", ">=", "2021-06-01")),
    ("camera~=Canon", ("camera", "~", "Canon")),
    ("photographer = 'Alec Weir' ", ("photographer", "=", "Alec Weir")),
    ('description~"a = b"', ("description", "~", "a = b")),
    ("x!=<=", ("x", "!=", "<=")),
])
def test_parse_filter(text, parsed):
    f = parse_filter(text)
    assert (f.key, f.op, f.value) == parsed


@pytest.mark.parametrize("bad", ["", "taken", ">=2021", "taken>=", "9x=1", "a b=c", "width=''"])
def test_bad_filters_are_usage_errors(bad):
    with pytest.raises(UsageError, match="bad filter"):
        parse_filter(bad)


def test_dates_are_local_time_as_written_and_partial_dates_are_ranges(store):
    assert names(store, "taken>=2021-06-01") == ["a", "c", "e"]  # a: 00:30 local on June 1 (22:30 UTC May 31)
    assert names(store, "taken=2021-06") == ["a", "e"]
    assert names(store, "taken<=2021-06") == ["a", "b", "e", "f"]
    assert names(store, "taken>2021-06") == ["c"]
    assert names(store, "taken<2021") == ["f"]
    assert names(store, "date=2021-05-31") == ["b"]
    assert names(store, "taken>=2021-06-01T00:00:00", "taken<2021-06-01T01:00:00") == ["a"]
    assert names(store, "taken!=2021") == ["c", "d", "f"]  # no date: kept by !=
    assert names(store, "taken~2021-06") == ["a", "e"]


def test_numbers_text_and_case(store):
    assert names(store, "width>=1024") == ["a", "b", "d", "f"]
    assert names(store, "width>1024", "height<2000") == ["d", "f"]
    assert names(store, "camera~canon") == ["a", "d"]
    assert names(store, "make=CANON") == ["a", "d"]
    assert names(store, "model!=nikon d750") == ["a", "c", "d", "e", "f"]
    assert names(store, "name=c.JPG") == ["c"]
    assert names(store, "path~/home/") == ["d"]


def test_folders_are_prefixes_below_indexed_roots_or_absolute(store, tmp_path):
    assert names(store, "folder=trips/") == ["a", "b", "c"]  # not tripsX, not /other/trips
    assert names(store, "folder=trips/2021") == ["a", "b"]
    assert names(store, "folder=/other") == ["f"]
    assert names(store, "folder=./trips", cwd="/other") == ["f"]
    assert names(store, "folder!=trips") == ["d", "e", "f"]
    assert names(store, "folder~TRIPS") == ["a", "b", "c", "e", "f"]


def test_imported_fields_text_numbers_dates(store):
    assert names(store, "photographer=alec weir") == ["a"]
    assert names(store, "Photographer~MÜLLER") == ["b"]  # the value is case-folded fully; stored text ASCII-only
    assert names(store, "photographer~Müller") == ["b"]
    assert names(store, "description~100%") == ["b"]
    assert names(store, "description~_") == ["c"]
    assert names(store, "source_width>=2000") == ["a"]
    assert names(store, "shot=2021-06") == ["a"]
    assert names(store, "photographer!=Alec Weir") == ["b", "c", "d", "e", "f"]  # without the field: kept


def test_tags(store):
    assert names(store, "tag=beach") == ["a", "d"]
    assert names(store, "tag=BEAR") == ["d"]
    assert names(store, "tag~be") == ["a", "d"]
    assert names(store, "tag!=beach") == ["b", "c", "e", "f"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_only_ever_parameters(store, value):
    for op in ("=", "~", "!="):
        for key in ("photographer", "camera", "folder", "tag", "name"):
            names(store, f"{key}{op}{value}")
    assert store.count() == len(ROWS) and store.read("SELECT count(*) FROM fields")[0][0] > 0
    expected = ["f"] if value == "'; DROP TABLE images; --" else ["d"] if value == "O'Brien" else []
    assert names(store, f"photographer={value}") == expected
    assert names(store, f"photographer~{value}") == (["d", "f"] if value == "'" else expected)


def test_compiled_sql_carries_values_as_parameters(store):
    ctx = store._context("")
    for value in HOSTILE:
        cond = compile_filters([Filter("photographer", "~", value, "x"), Filter("camera", "=", value, "y"),
                                Filter("folder", "=", value, "z"), Filter("tag", "=", value, "t")], ctx)
        assert "drop" not in cond.sql.lower() and "delete" not in cond.sql.lower() and "東京" not in cond.sql
        assert value.lower() in [str(p) for p in cond.params]


@pytest.mark.parametrize("bad, message", [
    ("camera<canon", "camera is text"),
    ("width~10", "is for text"),
    ("width>=wide", "needs a number"),
    ("taken>=June", "not a date"),
    ("photographer<Alec", "needs a number"),
    ("nosuchkey=1", "unknown key 'nosuchkey'.*photographer"),
    ("tag>beach", "tags take"),
    ("folder>trips", "folder takes"),
])
def test_filter_errors_say_what_is_wrong(store, bad, message):
    with pytest.raises(UsageError, match=message):
        names(store, bad)


def test_date_range():
    assert date_range("1970-01-02") == (1.0, 2.0)
    assert date_range("1970-02") == (31.0, 59.0)
    assert date_range("1971")[1] - date_range("1971")[0] == 365
    assert date_range("1970-01-01T12:00:00") == (0.5, 0.5)
    assert date_range("2021-13") is None and date_range("soon") is None and date_range("12") is None


@pytest.fixture
def lib(tmp_path):
    make_folder(tmp_path / "photos" / "trips", 8)
    make_folder(tmp_path / "photos" / "home", 4, "h")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([tmp_path / "photos"], workers=0)
    return lib


def test_filtered_search_ranks_exactly_the_allowed_rows(lib):
    ids, mat = lib.store.vectors("main")
    q = ColourEmbedder().embed_texts(["red"])[0]
    for where in (["folder=trips"], ["folder=home"], ["name=img_003.jpg"], ["width>=1"], ["folder!=home"]):
        allowed_set = set(allowed(lib.store, where))
        scores = {int(i): float(s) for i, s in zip(ids, mat @ q) if int(i) in allowed_set}
        hits = lib.search("red", limit=100, where=where, keywords=False)
        assert [h.id for h in hits] == sorted(scores, key=lambda i: -scores[i])
        assert all(abs(h.score - scores[h.id]) < 1e-5 for h in hits)


def _no_match(lib, *args, **options) -> str:
    """The note of a search whose filters match nothing (it has no hits: it raises nothing)."""
    hits = lib.search(*args, **options)
    assert hits == [] and hits.note
    return hits.note


def test_a_filter_that_matches_nothing_says_which(lib):
    assert "no image has camera~canon" in _no_match(lib, "red", where=["camera~canon", "width>=1"])
    assert "together" in _no_match(lib, "red", where=["folder=trips", "folder=home"])
    assert "no image is tagged 'beach'" in _no_match(lib, "tag:beach red")
    assert "below the indexed folders" in _no_match(lib, "red", where=["folder=nowhere"])
    assert lib.search("red", limit=1).note is None


def test_cached_id_sets_follow_changes_from_this_and_other_connections(lib, tmp_path):
    target = lib.search("red", limit=1, keywords=False)[0].id
    lib.store.set_fields([(target, {"mood": "busy"})])
    assert _no_match(lib, "red", where=["mood=calm"])  # the empty id set is cached now
    lib.store.set_fields([(target, {"mood": "calm"})])  # changed through this connection
    assert [h.id for h in lib.search("red", where=["mood=calm"])] == [target]
    other = Library(tmp_path / "lib")  # another connection to the same library
    other.store.set_fields([(target, {"mood": "busy"})])
    assert "mood=calm" in _no_match(lib, "red", where=["mood=calm"])
    other.tag_add(target, ["calm"])
    assert [h.id for h in lib.search("tag:calm red")] == [target]


def test_keyword_matches_with_a_selective_filter(lib, monkeypatch):
    from picseek.store import sqlite_search

    ids = [h.id for h in lib.search("red", limit=12, keywords=False)]
    lib.store.set_fields([(i, {"title": f"kite {'kite ' * n}"}) for n, i in enumerate(ids)])  # last ranks first
    selection = lib.store.select([parse_filter(f"id<={ids[0]}"), parse_filter(f"id>={ids[0]}")], [], [], "")
    assert lib.store.keyword_ids("kite", "", selection, 1) == [ids[0]]  # found among the WIDE best
    monkeypatch.setattr(sqlite_search, "WIDE", 1)
    calls = []
    real = lib.store.read_ids
    monkeypatch.setattr(lib.store, "read_ids", lambda sql, params=(): calls.append(sql) or real(sql, params))
    assert lib.store.keyword_ids("kite", "", selection, 1) == [ids[0]]  # needs the SQL condition
    assert len(calls) == 2 and "+rowid IN" in calls[1]
