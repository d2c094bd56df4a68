"""Metadata files: the readers (JSON, JSON Lines, CSV/TSV, Parquet, URL lists), their errors, and the join of
rows to indexed images (path, name, id, URL) with an Unsplash-style file as-is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from picseek import Library
from picseek.cli import main
from picseek.errors import UsageError
from picseek.ingest.sources import detect_format, read_rows

from conftest import ColourEmbedder, make_folder

UNSPLASH_COLUMNS = ["photo_id", "photo_url", "photo_image_url", "photo_width", "photo_height", "photo_description",
                    "photographer_first_name", "photographer_last_name", "stats_views", "photo_submitted_at"]


def rows_of(path, fmt=None):
    return list(read_rows(path, fmt))


def write(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------------------------------ readers


def test_json_array_results_object_and_jsonl(tmp_path):
    items = [{"file": "a.jpg", "n": 1}, {"file": "b.jpg", "tags": ["x", "y"]}]
    assert rows_of(write(tmp_path / "a.json", json.dumps(items))) == items
    assert rows_of(write(tmp_path / "r.json", json.dumps({"total": 2, "results": items}))) == items
    assert rows_of(write(tmp_path / "o.json", json.dumps({"meta": {}, "pictures": items}))) == items
    lines = "\n".join(json.dumps(i) for i in items) + "\n\n"
    assert rows_of(write(tmp_path / "a.jsonl", lines)) == items
    assert rows_of(write(tmp_path / "lines.json", lines)) == items  # a .json that holds JSON Lines


def test_csv_delimiters_bom_quotes_and_short_rows(tmp_path):
    text = 'file,description,n\r\na.jpg,"a dog, on a beach\nat dusk",3\r\nb.jpg,plain\r\n\r\n'
    rows = rows_of(write(tmp_path / "a.csv", "\ufeff" + text))
    assert rows == [{"file": "a.jpg", "description": "a dog, on a beach\nat dusk", "n": "3"},
                    {"file": "b.jpg", "description": "plain"}]
    tsv = write(tmp_path / "photos.tsv000", "photo_id\tphoto_description\nabc\tHello, world; hi\n")
    assert detect_format(tsv) == "csv"
    assert rows_of(tsv) == [{"photo_id": "abc", "photo_description": "Hello, world; hi"}]
    semi = write(tmp_path / "s.csv", "file;n\na.jpg;1,5\n")
    assert rows_of(semi) == [{"file": "a.jpg", "n": "1,5"}]


def test_parquet_and_detection_by_content(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"photo_id": ["a", "b"], "photo_width": [4000, None], "when": ["2021-06-01", "2020-01-02"]})
    pq.write_table(table, tmp_path / "x.parquet")
    expected = [{"photo_id": "a", "photo_width": 4000, "when": "2021-06-01"},
                {"photo_id": "b", "photo_width": None, "when": "2020-01-02"}]
    assert rows_of(tmp_path / "x.parquet") == expected
    (tmp_path / "x.parquet").rename(tmp_path / "noext")
    assert detect_format(tmp_path / "noext") == "parquet" and rows_of(tmp_path / "noext") == expected
    write(tmp_path / "u", "https://a.example/1.jpg\nhttps://a.example/2.jpg\n")
    assert detect_format(tmp_path / "u") == "urls"
    write(tmp_path / "j", '{"a": 1}\n{"a": 2}\n')
    assert detect_format(tmp_path / "j") == "jsonl"


def test_url_list_txt_skips_blanks_and_comments(tmp_path):
    p = write(tmp_path / "urls.txt", "# my list\nhttps://a.example/1.jpg\n\n  https://a.example/2.png  \n")
    assert rows_of(p) == [{"url": "https://a.example/1.jpg"}, {"url": "https://a.example/2.png"}]


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", '[{"a": 1},\n {"a": 2,,}]', "bad.json line 2 column 10: not valid JSON"),
    ("bad.jsonl", '{"a": 1}\n{"a": 2}\n{"a": \n', "bad.jsonl line 3: not valid JSON"),
    ("list.jsonl", '{"a": 1}\n[1, 2]\n', "list.jsonl line 2: an array, not an object"),
    ("scalar.json", '"hello"', "expected a JSON array of objects"),
    ("mixed.json", '[{"a": 1}, 3]', "item 1 is a number, not an object"),
    ("extra.csv", "a,b\n1,2\n1,2,3\n", "extra.csv line 3: 3 cells but the header has 2 columns"),
    ("empty.csv", "", "empty file or no header row"),
    ("bin.dat", "PK\x03\x04\x00\x00binary", "unknown format (binary data)"),
])
def test_unreadable_files_give_one_clear_line(tmp_path, name, content, message):
    p = write(tmp_path / name, content, encoding="latin-1")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        rows_of(p)
    assert "\n" not in str(exc.value)


def test_non_utf8_names_its_line(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("file,desc\na.jpg,ok\nb.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin.csv line 3: not UTF-8"):
        rows_of(p)


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "broken.parquet"
    p.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    with pytest.raises(UsageError, match="broken.parquet: not a readable Parquet file"):
        rows_of(p)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        read_rows(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------------- joining rows


@pytest.fixture
def lib(tmp_path):
    folders = [tmp_path / "photos" / "trips", tmp_path / "photos" / "home"]
    make_folder(folders[0], 4, prefix="trip")
    make_folder(folders[1], 3, prefix="home")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([tmp_path / "photos"], workers=0)
    return lib


def ids_by_name(lib) -> dict[str, int]:
    return {Path(p).name: s.id for p, s in lib.store.file_states([]).items()}


def unsplash_csv(path: Path, ids: list[str], sep: str = "\t") -> Path:
    lines = [sep.join(UNSPLASH_COLUMNS)]
    for n, pid in enumerate(ids):
        lines.append(sep.join([pid, f"https://unsplash.com/photos/{pid}", f"https://images.unsplash.com/photo-{pid}",
                               "5000", "3333", f"photo number {n}", "Alec", "Weir", str(100 * n),
                               "2021-06-01 10:00:00"]))
    return write(path, "\n".join(lines) + "\n")


def test_unsplash_file_as_is_joins_by_photo_id(lib, tmp_path):
    src = unsplash_csv(tmp_path / "photos.tsv000", ["trip_000", "trip_001", "home_002", "nope1", "nope2"])
    report = lib.import_metadata(src)
    assert (report.column, report.key) == ("photo_id", "id")
    assert (report.rows, report.matched, report.unmatched, report.images) == (5, 3, 2, 3)
    assert report.unmatched_examples == ["nope1", "nope2"]
    ids = ids_by_name(lib)
    fields = lib.store.get_fields([ids["trip_001.jpg"]])[ids["trip_001.jpg"]]
    assert fields["description"] == "photo number 1" and fields["photographer"] == "Alec Weir"
    assert fields["url"] == "https://images.unsplash.com/photo-trip_001"
    assert fields["page_url"] == "https://unsplash.com/photos/trip_001"
    assert fields["source_width"] == "5000" and fields["source_height"] == "3333"
    assert fields["stats_views"] == "100" and fields["photo_id"] == "trip_001"  # unknown columns kept
    assert "photographer_first_name" not in fields and "photo_description" not in fields
    image = lib.store.get_images([ids["trip_001.jpg"]])[ids["trip_001.jpg"]]
    assert (image["width"], image["height"]) == (320, 240)  # the decoded size is never overridden
    assert report.fields_written == 3 * 9
    nums = dict(lib.store._conn().execute("SELECT key, num FROM fields WHERE image_id = ?", (ids["trip_001.jpg"],)))
    assert nums["stats_views"] == 100.0 and nums["photo_submitted_at"] > 18000  # numbers and dates compare


def test_join_by_relative_absolute_and_tail_paths(lib, tmp_path):
    trips = tmp_path / "photos" / "trips"
    rows = [{"path": "photos/trips/trip_000.jpg", "note": "relative to the file"},
            {"path": str(trips / "trip_001.jpg"), "note": "absolute"},
            {"path": "trips/trip_002.jpg", "note": "tail"},
            {"path": "elsewhere/trip_003.jpg", "note": "wrong folder"}]
    report = lib.import_metadata(write(tmp_path / "m.json", json.dumps(rows)))
    assert (report.column, report.key, report.matched, report.unmatched) == ("path", "path", 3, 1)
    ids = ids_by_name(lib)
    got = lib.store.get_fields([ids["trip_000.jpg"], ids["trip_001.jpg"], ids["trip_002.jpg"], ids["trip_003.jpg"]])
    assert [got[ids[f"trip_00{i}.jpg"]].get("note") for i in range(4)] == [
        "relative to the file", "absolute", "tail", None]
    assert "path" not in got[ids["trip_000.jpg"]]  # the key column is the image's own path: not a field


def test_bare_file_names_in_a_path_column_join_in_auto_mode(lib, tmp_path):
    src = write(tmp_path / "m.csv", "path,note\ntrip_000.jpg,a\nhome_001.jpg,b\ntrip_002,c\nnope.jpg,d\n")
    report = lib.import_metadata(src)
    assert (report.column, report.key, report.matched, report.unmatched) == ("path", "path", 3, 1)
    only_paths = write(tmp_path / "p.csv", "path,note\ntrip_000.jpg,a\nhome_001.jpg,b\ntrips/trip_002.jpg,c\n")
    report = lib.import_metadata(only_paths)
    assert (report.column, report.key, report.matched) == ("path", "path", 3)
    ids = ids_by_name(lib)
    assert lib.store.get_fields([ids["trip_002.jpg"]])[ids["trip_002.jpg"]]["note"] == "c"


def test_join_by_name_with_explicit_key_and_column_and_tags(lib, tmp_path):
    rows = [{"File Name": "home_000.jpg", "Caption": "kitchen", "keywords": "Indoor, home;cosy"},
            {"File Name": "home_001", "Caption": "garden", "tags": ["outdoor", "green"]}]
    src = write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows))
    report = lib.import_metadata(src, key="name", column="file name")
    assert (report.column, report.key, report.matched, report.tags_written) == ("File Name", "name", 2, 5)
    ids = ids_by_name(lib)
    tags = lib.store.get_tags([ids["home_000.jpg"]])[ids["home_000.jpg"]]
    assert sorted(t["tag"] for t in tags) == ["cosy", "home", "indoor"] and tags[0]["source"] == "import"
    assert lib.store.get_fields([ids["home_001.jpg"]])[ids["home_001.jpg"]] == {"description": "garden"}


def test_duplicate_keys_reported_later_row_wins(lib, tmp_path):
    src = write(tmp_path / "d.csv", "filename,rating\ntrip_000.jpg,1\ntrip_000.jpg,5\n,3\n")
    report = lib.import_metadata(src)
    assert (report.duplicates, report.duplicate_examples, report.no_key) == (1, ["trip_000.jpg"], 1)
    ids = ids_by_name(lib)
    assert lib.store.get_fields([ids["trip_000.jpg"]])[ids["trip_000.jpg"]]["rating"] == "5"


def test_join_by_url_field(lib, tmp_path):
    ids = ids_by_name(lib)
    lib.store.set_fields([(ids["home_002.jpg"], {"url": "https://img.example/x.jpg"})], source="download")
    src = write(tmp_path / "u.csv", "photo_image_url,title,url\nhttps://img.example/x.jpg,found me,https://page\n"
                                    "https://img.example/y.jpg,not here,\n")
    report = lib.import_metadata(src)
    assert (report.column, report.key, report.matched, report.unmatched) == ("photo_image_url", "url", 1, 1)
    fields = lib.store.get_fields([ids["home_002.jpg"]])[ids["home_002.jpg"]]
    assert fields == {"url": "https://img.example/x.jpg", "title": "found me", "source_url": "https://page"}


def test_bad_column_and_no_join_column_are_clear(lib, tmp_path):
    src = write(tmp_path / "c.csv", "colour,size\nred,1\n")
    with pytest.raises(UsageError, match="no column to join on"):
        lib.import_metadata(src)
    with pytest.raises(UsageError, match="no column 'nope' in the file; its columns: colour, size"):
        lib.import_metadata(src, column="nope")
    with pytest.raises(UsageError, match="unknown key"):
        lib.import_metadata(src, key="colour", column="colour")


def test_cli_import_metadata_reports_and_fails_when_nothing_matches(lib, tmp_path, capsys):
    src = unsplash_csv(tmp_path / "p.csv", ["trip_002", "zzz"], sep=",")
    main(["--library", str(lib.path), "import-metadata", str(src), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["matched"] == 1 and out["unmatched_examples"] == ["zzz"]
    none = unsplash_csv(tmp_path / "none.csv", ["zzz"], sep=",")
    with pytest.raises(SystemExit) as done:
        main(["--library", str(lib.path), "import-metadata", str(none)])
    assert done.value.code == 1
    captured = capsys.readouterr()
    assert "0 matched" in captured.out and "no row matched an indexed image" in captured.err
    bad = write(tmp_path / "bad.jsonl", '{"a": 1}\n{oops\n')
    with pytest.raises(SystemExit) as done:
        main(["--library", str(lib.path), "import-metadata", str(bad)])
    assert done.value.code == 2 and "bad.jsonl line 2: not valid JSON" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- choosing a column


def test_pick_column_asked_then_usual_names_then_cells():
    from picseek.ingest.sources import pick_column

    rows = [{"Image URL": "https://h/a.jpg", "Caption": "x"}, {"Image URL": "", "notes": "y"}]
    assert pick_column(rows, "image-url") == "Image URL"  # matched through the names' normal form
    assert pick_column(rows, None, ("caption", "image_url")) == "Caption"  # the first usual name present
    assert pick_column(rows, None, ("notes",), header_rows=1, looks_right=lambda c: c.startswith("https://")) \
        == "Image URL"  # (notes is only in the second row) the cells decide
    with pytest.raises(UsageError, match=r"^no column 'src'; its columns: Image URL, Caption, notes$"):
        pick_column(rows, "src")
    with pytest.raises(UsageError, match=r"^f.csv: no column 'src' \(columns: Image URL, Caption, notes\)$"):
        pick_column(rows, "src", source="f.csv", unknown="{source}: no column {asked!r} (columns: {columns})")
    with pytest.raises(UsageError, match=r"^no such column \(looked for a, b; columns: Image URL, Caption, notes\)$"):
        pick_column(rows, None, ("a", "b"))


def test_spark_list_columns_keep_their_choices_and_messages():
    from picseek.scale.spark import path_column

    assert path_column([{"ID": 1, "Image": "a.jpg"}, {"ID": 2, "URL": "s3://b/x.jpg"}], None, "l.csv") == "URL"
    assert path_column([{"id": 1, "where": "photos/a"}], None, "l.csv") == "where"  # a column of paths
    assert path_column([{"id": 1, "where": "a.PNG"}], "WHERE ", "l.csv") == "where"
    with pytest.raises(UsageError, match=r"^l.csv: no column 'nope'; its columns: id, where$"):
        path_column([{"id": 1, "where": "a.jpg"}], "nope", "l.csv")
    with pytest.raises(UsageError, match=r"^l.csv: no column of image paths or URLs found: name it with --url-column "
                                         r"\(columns: id, n\)$"):
        path_column([{"id": 1, "n": "x"}], None, "l.csv")


def test_training_table_columns_keep_their_choices_and_messages():
    from picseek.learn.data import CAPTION_COLUMNS, IMAGE_COLUMNS, _pick

    row = {"File": "a.jpg", "Caption": "a cat", "other": 1}
    assert _pick(row, None, IMAGE_COLUMNS, "image", Path("t.csv")) == "File"  # usual names in any case
    assert _pick(row, None, CAPTION_COLUMNS, "caption", Path("t.csv")) == "Caption"
    assert _pick(row, "other", CAPTION_COLUMNS, "caption", Path("t.csv")) == "other"
    with pytest.raises(UsageError, match=r"^t.csv: no column 'caption' \(columns: File, Caption, other\)$"):
        _pick(row, "caption", CAPTION_COLUMNS, "caption", Path("t.csv"))  # an asked column is named exactly
    with pytest.raises(UsageError, match=r"^t.csv: no image column \(looked for image, path, file, filename, "
                                         r"filepath, image_path, img; columns: Caption, other\)$"):
        _pick({"Caption": "x", "other": 1}, None, IMAGE_COLUMNS, "image", Path("t.csv"))
