"""Tags by hand and zero-shot auto-tagging (scores kept, user tags never overwritten, reruns replace)."""
import numpy as np
import pytest

from picseek.errors import UsageError
from picseek.learn import zeroshot

LABELS = ["red", "green", "blue", "yellow"]


@pytest.fixture
def lib(colour_lib):
    return colour_lib  # (tests/conftest.py)


def tags_of(lib, image_id):
    return {t["tag"]: (t["source"], t["score"]) for t in lib.store.get_tags([image_id])[image_id]}


def test_add_and_remove_by_id_or_path(lib, tmp_path):
    path = tmp_path / "photos" / "img_003.jpg"
    image_id = lib.store.find_path(str(path))
    assert lib.tag_add(image_id, ["Beach", "  new   york ", "beach"]) == ["beach", "new york"]
    assert lib.tag_add(str(path), ["sunset"]) == ["beach", "new york", "sunset"]
    assert lib.tag_add(f"id:{image_id}", ["x"])[-1] == "x"
    assert tags_of(lib, image_id)["beach"] == ("user", None)
    assert lib.tag_remove(image_id, ["BEACH", "not-there"]) == 1
    assert lib.tag_counts() == {"new york": 1, "sunset": 1, "x": 1}


@pytest.mark.parametrize("image, tags, message", [
    (99999, ["x"], "not an indexed image"),
    ("/no/such/file.jpg", ["x"], "neither an image id nor"),
    (1, [], "at least one tag"),
    (1, ["  "], "empty tags"),
])
def test_tag_errors(lib, image, tags, message):
    with pytest.raises(UsageError, match=message):
        lib.tag_add(image, tags)


def test_auto_tag_keeps_scores_at_or_above_the_threshold(lib):
    ids, mat = lib.store.vectors("main")
    scores = zeroshot.label_scores(mat, zeroshot.label_vectors(lib.embedder(), LABELS))
    threshold = float(np.median(scores))
    report = lib.auto_tag(LABELS, threshold=threshold)
    expected = {(int(ids[r]), LABELS[c]) for r, c in zip(*np.nonzero(scores >= threshold))}
    got = {(i, t["tag"]) for i, ts in lib.store.get_tags(ids.tolist()).items() for t in ts}
    assert got == expected and report.tags == len(expected) and report.images == 8
    assert sum(report.per_label.values()) == len(expected)
    for i, tag in expected:
        source, score = tags_of(lib, i)[tag]
        assert source == "auto" and abs(score - scores[list(ids).index(i), LABELS.index(tag)]) < 1e-5
    red = lib.store.find_path(str(lib.search("red", limit=1, keywords=False)[0].path))
    assert max(tags_of(lib, red).items(), key=lambda kv: kv[1][1])[0] == "red"


def test_auto_tag_reruns_replace_auto_tags_and_keep_user_tags(lib):
    lib.tag_add(1, ["red"])
    lib.auto_tag(LABELS, threshold=-1.0)  # every label on every image
    assert tags_of(lib, 1)["red"] == ("user", None)
    assert tags_of(lib, 2)["red"][0] == "auto"
    lib.auto_tag(LABELS, threshold=1.1)  # nothing passes: the earlier auto tags of these labels go
    assert tags_of(lib, 1) == {"red": ("user", None)} and tags_of(lib, 2) == {}
    lib.auto_tag(["green"], threshold=-1.0)
    lib.auto_tag(["blue"], threshold=-1.0)  # other labels' auto tags stay
    assert set(tags_of(lib, 2)) == {"green", "blue"}


def test_auto_tags_are_searchable(lib):
    lib.auto_tag(["red"], threshold=0.6)
    tagged = {i for i, ts in lib.store.get_tags(range(1, 9)).items() if ts}
    assert tagged and {h.id for h in lib.search("tag:red", limit=20)} == tagged


def test_default_threshold_is_measured_per_model(lib, tmp_path):
    assert zeroshot.default_threshold("builtin") == 0.45
    with pytest.raises(UsageError, match="no measured tag threshold for model test-colour"):
        lib.auto_tag(LABELS)


def test_read_labels(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# animals\ncat\n\n  a  red car \ncat\n", encoding="utf-8")
    assert zeroshot.read_labels(f) == ["cat", "a red car"]
    f.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no labels"):
        zeroshot.read_labels(f)
    with pytest.raises(UsageError, match="cannot read"):
        zeroshot.read_labels(tmp_path / "missing.txt")
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UsageError, match="cannot read"):
        zeroshot.read_labels(f)


def test_prompt_template():
    assert zeroshot.prompts(["cat"], "a blurry photo of {label}.") == ["a blurry photo of cat."]
    with pytest.raises(UsageError, match="must contain"):
        zeroshot.prompts(["cat"], "a photo")
