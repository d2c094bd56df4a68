"""The Python API as a notebook user meets it (issue 17): the package lists its lazy exports, a hit opens and shows
its image, search results are a Hits list that draws a grid, a filter that matches nothing gives no hits and a note,
every hit says which ranking put it there (via), and classify takes files, PIL images and image ids."""
from __future__ import annotations

import base64
import io
import re
import rlcompleter
import subprocess
import sys

import pytest
from PIL import Image

import picseek
from picseek import Hit, Hits, Library
from picseek import hits as hits_module
from picseek.errors import ImageError, UsageError
from picseek.query.rank import found_by
from picseek.query.rerank import rerank_hits

from conftest import ColourEmbedder, draw_photo, make_folder

DATA_URI = re.compile(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture
def photos(tmp_path):
    make_folder(tmp_path / "photos", 8)  # red, green, blue, yellow, purple, orange, white, black
    return tmp_path / "photos"


@pytest.fixture
def lib(tmp_path, photos):
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([photos], workers=0)
    return lib


def _jpegs(html: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in DATA_URI.findall(html)]


# -- the package ----------------------------------------------------------------------------------------------------
def test_dir_and_completion_list_the_lazy_exports():
    exports = {"Library", "Hit", "Hits", "SearchRequest", "IndexReport", "PicseekError", "__version__"}
    assert exports <= set(dir(picseek))
    completer = rlcompleter.Completer({"picseek": picseek})
    found = [completer.complete("picseek.Hi", n) for n in range(3)]
    assert found == ["picseek.Hit(", "picseek.Hits(", None]  # (classes complete with a parenthesis)
    assert completer.complete("picseek.Lib", 0) == "picseek.Library("
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        picseek.nothing  # noqa: B018
    # dir() imports nothing: `import picseek` stays cheap
    code = "import sys, picseek; dir(picseek); print('picseek.library' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- one hit --------------------------------------------------------------------------------------------------------
def test_a_hit_opens_its_image_within_the_pixel_limit(lib, monkeypatch):
    hit = lib.search("red", limit=1, keywords=False)[0]
    img = hit.open()
    assert isinstance(img, Image.Image) and img.size == (hit.width, hit.height) == (320, 240)
    assert hit.name == "img_000.jpg"
    monkeypatch.setenv("PICSEEK_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match="too large"):
        hit.open()


def test_a_hit_shows_a_small_thumbnail_in_notebooks(lib, tmp_path):
    hit = lib.search("red", limit=1, keywords=False)[0]
    png = Image.open(io.BytesIO(hit._repr_png_()))
    assert png.format == "PNG" and png.size == (256, 192)
    html = hit._repr_html_()
    [jpeg] = _jpegs(html)
    assert jpeg.format == "JPEG" and jpeg.size == (256, 192)
    assert "img_000.jpg" in html and f"{hit.score:.3f}" in html and "vector" in html
    big = tmp_path / "big.jpg"
    draw_photo("blue", size=(3000, 2000)).save(big)  # decoded at reduced scale, still 256 px wide
    assert Hit(1, str(big), 0.5).thumbnail().size == (256, 171)
    gone = Hit(2, str(tmp_path / "gone <b>.jpg"), 0.5)
    assert gone._repr_png_() is None
    html = gone._repr_html_()
    assert "<img" not in html and "cannot read image" in html and "gone &lt;b&gt;.jpg" in html
    assert "gone <b>" not in html


# -- Hits -----------------------------------------------------------------------------------------------------------
def test_search_returns_hits_that_draw_a_grid(lib, monkeypatch):
    hits = lib.search("red", limit=5, keywords=False)
    assert isinstance(hits, Hits) and isinstance(hits, list) and len(hits) == 5 and hits.note is None
    html = hits._repr_html_()
    assert 'class="picseek-hits"' in html and "display:grid" in html
    assert len(_jpegs(html)) == 5 and html.count("<figure") == 5
    for rank, h in enumerate(hits, 1):
        assert f"{rank}. <b>{h.name}</b> {h.score:.3f}" in html
    assert isinstance(hits[:2], Hits) and hits[:2] == hits[0:2] and isinstance(hits[0], Hit)
    assert isinstance(lib.similar(hits[0].id, limit=3), Hits)
    page, _ = lib.browse(limit=3)
    assert isinstance(page, Hits) and all(h.via is None and h.score is None for h in page)
    assert len(_jpegs(page._repr_html_())) == 3 and "</b></figcaption>" in page._repr_html_()  # (no score)
    assert all(isinstance(g, Hits) for g in lib.duplicates(0.5))
    monkeypatch.setattr(hits_module, "GRID_MAX", 2)
    html = hits._repr_html_()
    assert len(_jpegs(html)) == 2 and "and 3 more" in html


def test_a_filter_that_matches_nothing_gives_no_hits_and_a_note(lib):
    nothing = lib.search("red", where=["camera~leica"])
    assert nothing == [] and isinstance(nothing, Hits)
    assert nothing.note == "no image has camera~leica"
    assert "No hits: no image has camera~leica." in nothing._repr_html_()
    assert "leica" in repr(nothing)
    assert "no image is tagged 'sunset'" in lib.search("tag:sunset red").note
    similar = lib.similar(lib.search("red", limit=1)[0].id, where=["folder=nowhere"])
    assert similar == [] and "below the indexed folders" in similar.note
    high = lib.search("red", threshold=1.01)  # a threshold is no filter: no hits, no note
    assert high == [] and high.note is None and high._repr_html_() == "<p><em>No hits.</em></p>"


# -- via ------------------------------------------------------------------------------------------------------------
def test_via_names_the_rankings_that_found_each_hit(lib):
    plain = lib.search("red umbrella", limit=8, keywords=False)
    assert {h.via for h in plain} == {"vector"}
    target = plain[-1]  # the least red: lifted by its description alone
    lib.store.set_fields([(target.id, {"description": "A big umbrella in the rain"})])
    fused = lib.search("red umbrella", limit=8)
    assert fused[0].id == target.id and fused[0].via == "vector+keyword"
    assert fused[1].score > fused[0].score  # the rank a cosine cannot explain, explained
    assert {h.via for h in fused[1:]} == {"vector"}
    assert fused[0].as_dict()["via"] == "vector+keyword"
    lib.tag_add(plain[0].id, ["sunset"])
    assert [(h.id, h.via) for h in lib.search("tag:sunset", keywords=False)] == [(plain[0].id, "tag")]
    assert [h.via for h in lib.search("tag:sunset")] == ["tag+keyword"]  # the tag is a keyword too
    assert lib.search("tag:sunset red", keywords=False)[0].via == "vector"  # the words rank, the tag filters
    assert {h.via for h in lib.search("tag:sunset red", soft_tags=True, keywords=False)} == {"vector"}
    assert {h.via for h in lib.search(f"id:{target.id}", limit=3)} == {"vector"}
    assert {h.via for h in lib.similar(target.id, limit=3)} == {"vector"}


def test_found_by_is_the_fusion_rule_read_back():
    assert found_by([1, 2, 3], [3, 9]) == {1: "vector", 2: "vector", 3: "vector+keyword", 9: "keyword"}
    assert found_by([1], [1], "tag") == {1: "tag+keyword"}
    assert found_by([], []) == {}


class _Reranker:
    """Scores images by how blue they are (a stand-in for BLIP)."""

    def score(self, images, text):
        return [float(img.convert("RGB").resize((1, 1)).getpixel((0, 0))[2]) for img in images]


def test_re_ranked_hits_say_rerank(lib):
    hits = lib.search("red", limit=6, keywords=False, rerank=_Reranker(), rerank_top=3)
    assert [h.via for h in hits] == ["rerank"] * 3 + ["vector"] * 3
    assert all(h.rerank_score is not None for h in hits[:3]) and isinstance(hits, Hits)
    loose = rerank_hits([Hit(1, "a", 0.5, via="keyword"), Hit(2, "b", 0.4, via="vector")], "red", _Reranker(), 1,
                        lambda h: draw_photo("blue"))
    assert [(h.id, h.via) for h in loose] == [(1, "rerank"), (2, "vector")]


# -- classify -------------------------------------------------------------------------------------------------------
def test_classify_takes_files_pil_images_and_ids(lib, photos, tmp_path):
    labels = ["red", "blue", "green"]
    red_id = lib.search("red", limit=1, keywords=False)[0].id
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    preds = lib.classify([photos / "img_002.jpg", draw_photo("green"), red_id, 99999, tmp_path / "broken.jpg",
                          str(tmp_path / "missing.jpg")], labels, templates=["{label}"], top=2)
    assert [p.labels[0][0] if p.labels else None for p in preds] == ["blue", "green", "red", None, None, None]
    assert preds[0].path == str(photos / "img_002.jpg") and preds[0].id is None
    assert preds[1].path == "" and len(preds[1].labels) == 2
    assert (preds[2].id, preds[2].path) == (red_id, str(photos / "img_000.jpg"))
    assert "99999 is not an indexed image" in preds[3].error
    assert preds[4].error and preds[5].error and not preds[5].labels
    one = lib.classify(draw_photo("red"), "red, blue, green", templates=["{label}"])
    assert len(one) == 1 and one[0].labels[0][0] == "red"
    assert lib.classify([], labels) == []
    with pytest.raises(UsageError, match="classify_all"):
        lib.classify([photos / "img_002.jpg"], labels, store_tags=True)
    stored = lib.classify([red_id, 99999], labels, templates=["{label}"], top=1, store_tags=True, min_score=0.3)
    assert stored[0].labels[0][0] == "red" and len(stored[0].labels) == 1 and stored[1].error
    assert {"tag": "red", "source": "classify"}.items() <= lib.store.get_tags([red_id])[red_id][0].items()
    with pytest.raises(UsageError, match="at least two"):
        lib.classify([red_id], ["red"])


def test_classify_with_labels_alone_still_classifies_the_library(lib):
    report, preds = lib.classify(["red", "blue", "green"], templates=["{label}"], top=1)
    assert report.images == 8 and len(preds) == 8 and report.tags == 0
    report2, preds2 = lib.classify_all("red,blue,green", templates=["{label}"], top=1, store_tags=True)
    assert [p.labels for p in preds2] == [p.labels for p in preds] and report2.tags > 0
    assert lib.classify(labels=["red", "blue"], templates=["{label}"])[0].images == 8  # the old keyword form
