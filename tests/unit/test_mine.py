"""Batch query mining (issue 18): the chunked top-K equals a brute-force ranking, `Library.mine` agrees with search,
filters and tags narrow it, the output formats read back, and BLIP re-ranking (a tiny random model) re-orders each
query's candidates with its scores (an image it cannot read gets none)."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from picseek.cli import cli
from picseek.errors import UsageError
from picseek.query import mine as mining
from picseek.query.rerank import load_reranker

import tiny_models
from conftest import ColourEmbedder


@pytest.fixture
def lib(colour_lib):
    return colour_lib  # (tests/conftest.py)


@pytest.mark.parametrize("allowed_every", [None, 3])
def test_top_k_is_the_brute_force_ranking(allowed_every):
    rng = np.random.default_rng(0)
    mat = rng.normal(size=(1000, 16)).astype(np.float32)
    q = rng.normal(size=(37, 16)).astype(np.float32)
    allowed = None if allowed_every is None else (np.arange(1000) % allowed_every == 0)
    rows, scores = mining.top_k(q, mat, 10, allowed, chunk_rows=97, query_block=8)
    full = q @ mat.T
    if allowed is not None:
        full[:, ~allowed] = -np.inf
    want = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert np.array_equal(rows, want)
    assert np.allclose(scores, np.take_along_axis(full, want, 1), atol=1e-5)
    few, _ = mining.top_k(q, mat, 5000, np.arange(1000) < 4)
    assert few.shape == (37, 4)  # never more than the allowed rows


def test_mine_agrees_with_search_and_writes_every_format(tmp_path, lib):
    queries = tmp_path / "q.txt"
    queries.write_text("red\n\nblue\nred\n")  # blank lines and repeats dropped
    cols, report = lib.mine(queries, top=3, out=tmp_path / "hits.parquet")
    assert (report.queries, report.rows, report.images) == (2, 6, 8)
    for text in ("red", "blue"):
        got = [p for p, t in zip(cols["path"], cols["query"]) if t == text]
        assert got == [h.path for h in lib.search(text, limit=3, keywords=False)]
    table = pq.read_table(tmp_path / "hits.parquet").to_pydict()
    assert list(table) == list(mining.COLUMNS) and table["rank"][:3] == [1, 2, 3]
    assert table["rerank_score"] == [None] * 6
    lib.mine(["red"], top=2, out=tmp_path / "hits.csv")
    with open(tmp_path / "hits.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["query"] for r in rows] == ["red", "red"] and rows[0]["rerank_score"] == ""
    lib.mine(["red"], top=2, out=tmp_path / "hits.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert lines[0]["path"] == rows[0]["path"] and lines[0]["image_id"] == int(rows[0]["image_id"])
    with pytest.raises(UsageError, match=".parquet, .csv or .jsonl"):
        lib.mine(["red"], out=tmp_path / "hits.xlsx")
    assert not (tmp_path / "hits.xlsx").exists()


def test_queries_from_a_table_and_filters(tmp_path, lib):
    (tmp_path / "q.csv").write_text("id,prompt\n1,red\n2,green\n")
    assert mining.read_queries(tmp_path / "q.csv") == ["red", "green"]
    with pytest.raises(UsageError, match="no column 'nope'"):
        mining.read_queries(tmp_path / "q.csv", "nope")
    ids = sorted(lib.store.get_images(list(range(1, 20))))
    lib.tag_images(ids[5:], add=["chosen"])
    cols, report = lib.mine(tmp_path / "q.csv", top=10, tags=["chosen"])
    assert report.images == 3 and set(cols["image_id"]) == set(ids[5:])
    cols, _ = lib.mine(["red"], top=10, where=["name~img_00"])
    assert len(cols["path"]) == 8
    cols, report = lib.mine(["red"], top=10, where=["name~img_003"])  # selective: only its rows are ranked
    assert report.images == 1 and [p.rsplit("/", 1)[-1] for p in cols["path"]] == ["img_003.jpg"]
    cols, report = lib.mine(["red"], top=10, where=["name~nothing-like-this"])
    assert report.images == 0 and cols["path"] == []


@pytest.mark.usefixtures("offline_hub")
def test_rerank_reorders_by_the_matching_score(tmp_path, lib):
    blip = tiny_models.make_tiny_blip_itm(tmp_path / "blip")
    first = sorted(lib.store.get_images(list(range(1, 20))).items())[0]
    gone = first[1]["path"]
    os.remove(gone)  # an image that cannot be read: no score, after the scored ones
    cols, report = lib.mine(["red", "blue circle"], top=8, rerank=str(blip))
    assert report.rerank == str(blip) and report.unreadable >= 1
    for text in ("red", "blue circle"):
        mine = [(p, s) for p, s, t in zip(cols["path"], cols["rerank_score"], cols["query"]) if t == text]
        scored = [s for _, s in mine if s is not None]
        assert scored == sorted(scored, reverse=True) and all(0 <= s <= 1 for s in scored)
        assert mine[-1] == (gone, None)
    # the same scores as the re-ranker gives one query's images directly
    model = load_reranker(str(blip))
    p, s = next((p, s) for p, s, t in zip(cols["path"], cols["rerank_score"], cols["query"]) if t == "red" and s)
    with Image.open(p) as im:
        assert abs(float(model.score([im.convert("RGB")], "red")[0]) - s) < 1e-4


def test_cli_mine(tmp_path, lib, monkeypatch):
    monkeypatch.setattr("picseek.models.registry.load_embedder", lambda name, **kw: ColourEmbedder())
    (tmp_path / "q.txt").write_text("red\ngreen\n")
    r = CliRunner().invoke(cli, ["--library", str(lib.path), "mine", str(tmp_path / "q.txt"), "--top", "2",
                                 "--out", str(tmp_path / "h.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rows"] == 4
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 4
