"""Search options through the one search function: weights and negatives, date sort, adaptive cut-off, options
checking, re-ranking hook, hits with fields and tags, similar and duplicates."""
import json

import numpy as np
import pytest
from PIL import Image

from picseek import Library
from picseek.errors import UsageError
from picseek.query.duplicates import duplicate_groups
from picseek.query.rank import adaptive_cut, date_key

from conftest import ColourEmbedder, draw_photo, make_folder

DATES = ["2021:06:01 10:00:00", None, "2019:01:05 08:00:00", "2023:12:24 18:30:00"]


@pytest.fixture
def lib(tmp_path):
    folder = tmp_path / "photos"
    make_folder(folder, 8)
    for n, date in enumerate(DATES):  # red (0) and orange (5) images: dates on the red ones
        img = Image.open(folder / f"img_{n:03d}.jpg")
        exif = Image.Exif()
        if date:
            exif[0x0132] = date  # DateTime
        draw_photo("red", seed=40 + n).save(folder / f"red_{n}.jpg", exif=exif)
        img.close()
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([folder], workers=0)
    return lib


def test_the_query_vector_is_the_weighted_sum_of_unit_term_vectors(lib, tmp_path):
    emb = ColourEmbedder()
    ids, mat = lib.store.vectors("main")
    image = tmp_path / "photos" / "img_004.jpg"
    v_img = lib.store.vector_of(lib.store.find_path(str(image)), "main")
    red, blue = emb.embed_texts(["red", "blue"])
    for query, vec in [("red + 3:blue", red + 3 * blue), ("red - 0.5:blue", red - 0.5 * blue),
                       (f"{image} + 2:red", v_img / np.linalg.norm(v_img) + 2 * red)]:
        q = vec / np.linalg.norm(vec)
        expected = {int(i): float(s) for i, s in zip(ids, mat @ q)}
        hits = lib.search(query, limit=20, keywords=False)
        assert [h.id for h in hits] == sorted(expected, key=lambda i: -expected[i])
        assert max(abs(h.score - expected[h.id]) for h in hits) < 1e-3, query  # stored vectors: float16


def test_sort_by_date_puts_undated_last(lib):
    hits = lib.search("red", limit=4, keywords=False, where=["name~red_"], sort="date")
    assert [h.taken_at[:10] if h.taken_at else None for h in hits] == ["2019-01-05", "2021-06-01", "2023-12-24",
                                                                       None]
    newest = lib.search("red", limit=4, keywords=False, where=["name~red_"], sort="newest")
    assert [h.taken_at[:4] if h.taken_at else None for h in newest] == ["2023", "2021", "2019", None]
    top2 = lib.search("red", limit=2, keywords=False, sort="date")  # the 2 most relevant, then sorted
    best2 = lib.search("red", limit=2, keywords=False)
    assert {h.id for h in top2} == {h.id for h in best2}


def test_date_key():
    assert sorted(["2021-01-01T00:00:00", None, "2020-05-05"], key=lambda d: date_key(d, False)) == [
        "2020-05-05", "2021-01-01T00:00:00", None]
    assert date_key("garbage", True) == (1, 0.0)


def test_adaptive_cut_drops_the_tail(lib):
    everything = lib.search("red", limit=100, keywords=False)
    scores = np.array([h.score for h in everything])
    cut = lib.search("red", limit=100, keywords=False, adaptive=True)
    assert 0 < len(cut) < len(everything)
    floor = adaptive_cut(scores, 0.5)
    assert all(h.score >= floor - 1e-6 for h in cut) and len(cut) == int((scores >= floor - 1e-6).sum())
    assert len(lib.search("red", limit=100, keywords=False, adaptive=0.9)) <= len(cut)
    assert adaptive_cut(np.array([0.1, 0.3, 0.5]), 0.5) == pytest.approx(0.4)


@pytest.mark.parametrize("kwargs, message", [
    ({"limit": 0}, "limit"), ({"sort": "size"}, "sort must be one of"), ({"adaptive": 1.5}, "adaptive"),
    ({"keywords": -1}, "keyword weight"), ({"rerank": "x", "rerank_top": 0}, "rerank_top"),
    ({"where": ["nope"]}, "bad filter"),
])
def test_bad_options_are_usage_errors(lib, kwargs, message):
    with pytest.raises(UsageError, match=message):
        lib.search("red", **kwargs)


class FakeReranker:
    """Scores an image by how blue it is (not what 'red' ranks first)."""

    def __init__(self):
        self.seen = 0

    def score(self, images, text):
        self.seen += len(images)
        rgb = [np.asarray(im, np.float32).reshape(-1, 3).mean(axis=0) for im in images]
        return np.array([b - (r + g) / 2 for r, g, b in rgb])


def test_rerank_reorders_the_top_n_through_the_search_function(lib, monkeypatch):
    import picseek.query.rerank as rerank

    fake = FakeReranker()
    monkeypatch.setattr(rerank, "load_reranker", lambda name, device="cpu", embedder=None: fake)
    plain = lib.search("red", limit=5, keywords=False)
    hits = lib.search("red", limit=5, keywords=False, rerank="fake", rerank_top=12)
    assert fake.seen == 12 and len(hits) == 5
    assert "img_002" in hits[0].path and hits[0].rerank_score is not None  # the bluest image
    assert [h.id for h in hits] != [h.id for h in plain]
    with pytest.raises(UsageError, match="needs words"):
        lib.search(str(lib.search("red", limit=1)[0].path), rerank="fake")


def test_hits_carry_fields_and_tags_into_json(lib):
    hit = lib.search("red", limit=1)[0]
    lib.store.set_fields([(hit.id, {"description": "Red ball", "photographer": "Alec Weir", "iso": 200})])
    lib.tag_add(hit.id, ["ball"])
    again = lib.search("red", limit=1)[0]
    d = json.loads(json.dumps(again.as_dict()))
    assert d["fields"] == {"description": "Red ball", "photographer": "Alec Weir", "iso": "200"}
    assert d["tags"] == [{"tag": "ball", "source": "user", "score": None}]


def test_similar_leaves_the_image_out(lib, tmp_path):
    target = lib.store.find_path(str(tmp_path / "photos" / "red_0.jpg"))
    hits = lib.similar(target, limit=3)
    assert len(hits) == 3 and target not in [h.id for h in hits]
    assert all("red_" in h.path or "img_000" in h.path for h in hits)  # the other red pictures
    assert [h.id for h in lib.similar(str(tmp_path / "photos" / "red_0.jpg"), limit=3)] == [h.id for h in hits]
    assert all("red_" in h.path for h in lib.similar(target, limit=5, where=["name~red_"]))


def test_duplicates_group_near_copies(lib, tmp_path):
    folder = tmp_path / "photos"
    Image.open(folder / "img_003.jpg").save(folder / "copy_of_3.png")
    Image.open(folder / "img_003.jpg").resize((200, 150)).save(folder / "small_3.jpg", quality=70)
    lib.index([folder], workers=0)
    groups = lib.duplicates(0.995)
    names = [sorted(h.path.rsplit("/", 1)[1] for h in g) for g in groups]
    assert ["copy_of_3.png", "img_003.jpg", "small_3.jpg"] in names
    assert all(len(g) >= 2 and g[0].score == pytest.approx(1.0, abs=1e-3) for g in groups)
    with pytest.raises(UsageError):
        lib.duplicates(1.5)


def test_duplicate_groups_are_transitive_and_tiled(monkeypatch):
    import picseek.query.duplicates as dup

    monkeypatch.setattr(dup, "BLOCK", 2)
    monkeypatch.setattr(dup, "COLUMNS", 3)
    angles = np.array([0.0, 0.1, 0.2, 1.5, 3.0, 3.05])
    mat = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    ids = np.arange(100, 106)
    groups = duplicate_groups(ids, mat, threshold=float(np.cos(0.11)))
    assert [[i for i, _ in g] for g in groups] == [[100, 101, 102], [104, 105]]  # 100~101~102 although 100!~102
    assert duplicate_groups(ids[:0], mat[:0], 0.9) == []
