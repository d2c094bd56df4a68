"""What `picseek search` and `similar` print about each hit (issue 17): a via column (which ranking put the hit
there) in the table and in --json, a date column when sorting by date, and the reason (exit 1: nothing found) when
filters match no image. In-process (CliRunner) on the ColourEmbedder test double."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from picseek import library as library_module
from picseek.cli import cli

from conftest import ColourEmbedder, draw_photo

# (file, colour, EXIF date)
PHOTOS = [("red_square.jpg", "red", "2019:05:01 10:00:00"), ("blue.jpg", "blue", "2021:07:02 11:00:00"),
          ("green.jpg", "green", "2020:01:03 12:00:00"), ("red_circle.jpg", "red", "2023:03:04 13:00:00"),
          ("yellow.jpg", "yellow", None)]


@pytest.fixture
def lib(tmp_path, monkeypatch) -> Path:
    real = library_module.Library
    monkeypatch.setattr(library_module, "Library", lambda path=None, model=None, **kw: real(path, ColourEmbedder(),
                                                                                             **kw))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (name, colour, taken) in enumerate(PHOTOS):
        exif = Image.Exif()
        if taken:
            exif[306] = taken  # DateTime
        draw_photo(colour, seed=i).save(photos / name, exif=exif)
    _invoke("-L", tmp_path / "lib", "index", photos, "--workers", "0")
    return tmp_path / "lib"


def _invoke(*args, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.stderr)
    return result


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_the_table_and_json_say_which_ranking_found_each_hit(lib):
    table = _rows(_invoke("-L", lib, "search", "red", "--limit", "5").stdout)
    assert table[0] == ["rank", "score", "via", "path"]
    # "red" is in two file names: those are found by both rankings, the rest by the vectors alone
    assert {Path(r[3]).name: r[2] for r in table[1:]} == {
        "red_square.jpg": "vector+keyword", "red_circle.jpg": "vector+keyword", "blue.jpg": "vector",
        "green.jpg": "vector", "yellow.jpg": "vector"}
    plain = _rows(_invoke("-L", lib, "search", "red", "--limit", "5", "--no-keywords").stdout)
    assert {r[2] for r in plain[1:]} == {"vector"}
    hits = json.loads(_invoke("-L", lib, "search", "red", "--limit", "5", "--json").stdout)
    assert {Path(h["path"]).name: h["via"] for h in hits} == {Path(r[3]).name: r[2] for r in table[1:]}
    similar = _rows(_invoke("-L", lib, "similar", hits[0]["id"], "--limit", "2").stdout)
    assert similar[0] == ["rank", "score", "via", "path"] and [r[2] for r in similar[1:]] == ["vector"] * 2


def test_sorting_by_date_shows_the_date_taken(lib):
    newest = _invoke("-L", lib, "search", "red", "--limit", "5", "--sort", "newest").stdout.splitlines()
    assert newest[0].split() == ["rank", "score", "via", "taken", "path"]
    dates = [line.split()[3:5] for line in newest[1:]]
    assert dates == [["2023-03-04", "13:00"], ["2021-07-02", "11:00"], ["2020-01-03", "12:00"],
                     ["2019-05-01", "10:00"], ["-", newest[5].split()[4]]]  # no date: last, shown as "-"
    assert Path(newest[5].split()[4]).name == "yellow.jpg"
    oldest = _rows(_invoke("-L", lib, "search", "red", "--limit", "5", "--sort", "date").stdout)
    assert [r[3] for r in oldest[1:]] == ["2019-05-01", "2020-01-03", "2021-07-02", "2023-03-04", "-"]
    by_score = _rows(_invoke("-L", lib, "search", "red", "--limit", "5").stdout)
    assert "taken" not in by_score[0]


def test_a_filter_that_matches_nothing_prints_the_reason(lib):
    for output in ([], ["--json"], ["--paths"]):
        result = _invoke("-L", lib, "search", "red", "--where", "camera~leica", *output, code=1)
        assert result.stdout == ""
        assert result.stderr == "picseek: no match: no image has camera~leica\n"
    result = _invoke("-L", lib, "similar", "1", "--where", "folder=nowhere", code=1)
    assert "below the indexed folders" in result.stderr and result.stdout == ""
    high = _invoke("-L", lib, "search", "red", "--threshold", "1.01", code=1)  # a threshold: no hits, no message
    assert high.stdout == "No results at or above threshold 1.01.\n"


def test_classify_all_still_classifies_the_library(lib):
    out = _invoke("-L", lib, "classify", "--all", "--labels", "red,blue,green", "--top", "1").stdout.splitlines()
    assert len(out) == len(PHOTOS)
    assert {Path(line.split(":")[0]).name: line.split()[-2] for line in out}["red_circle.jpg"] == "red"
