"""Zero-shot classification: prompt ensembling, probabilities, real photos on the built-in model, library tags."""
from __future__ import annotations

import numpy as np
import pytest

from picseek import Library
from picseek.errors import UsageError
from picseek.learn import classify, zeroshot
from picseek.models.base import l2_normalize

from conftest import make_folder


def test_templates_are_averaged_and_probabilities_sum_to_one(colour_embedder):
    w = zeroshot.class_weights(colour_embedder, ["red", "blue"], ["a {label} thing", "a photo of {label}"])
    one = zeroshot.label_vectors(colour_embedder, ["red", "blue"], "a {label} thing")
    two = zeroshot.label_vectors(colour_embedder, ["red", "blue"], "a photo of {label}")
    assert np.allclose(w, l2_normalize(one + two), atol=1e-6)
    p = zeroshot.softmax_probabilities(w, w, 100.0)
    assert np.allclose(p.sum(axis=1), 1) and (p.argmax(axis=1) == [0, 1]).all()
    with pytest.raises(UsageError, match="label"):
        zeroshot.class_weights(colour_embedder, ["red"], ["no placeholder"])


def test_labels_are_checked():
    assert classify.parse_labels(" cat, dog ,, big  car") == ["cat", "dog", "big car"]
    with pytest.raises(UsageError, match="at least two"):
        classify.parse_labels("cat")


def test_builtin_classifies_real_photos(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from picseek.models.registry import load_embedder

    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skimage_data, name)()).save(tmp_path / f"{name}.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    preds = classify.classify_images(load_embedder("builtin"), [tmp_path / "chelsea.jpg", tmp_path / "coffee.jpg",
                                                                tmp_path / "broken.jpg"],
                                     ["cat", "car", "boat", "cup of coffee", "airplane"], top=2)
    assert preds[0].labels[0][0] == "cat" and preds[0].labels[0][1] > 0.5
    assert preds[1].labels[0][0] == "cup of coffee"
    assert preds[2].error and not preds[2].labels
    assert all(a[1] >= b[1] for p in preds[:2] for a, b in zip(p.labels, p.labels[1:]))


def test_library_tags_are_stored_and_searchable(tmp_path, colour_embedder):
    make_folder(tmp_path / "photos", 8)  # red, green, blue, yellow, purple, orange, white, black
    lib = Library(tmp_path / "lib", model=colour_embedder)
    lib.index([tmp_path / "photos"], workers=0)
    red_id = next(h.id for h in lib.search("red", limit=1, keywords=False))
    lib.tag_add(red_id, ["blue"])  # a user's tag with a label's name is never replaced
    report, preds = classify.classify_library(lib, ["red", "blue", "green"], templates=["{label}"],
                                              store_tags=True, min_score=0.3, top=1)
    assert report.images == 8 and len(preds) == 8 and report.tags > 0
    tags = lib.store.get_tags([red_id])[red_id]
    assert {"tag": "blue", "source": "user", "score": None} in tags
    assert any(t["tag"] == "red" and t["source"] == "classify" and t["score"] >= 0.3 for t in tags)
    assert red_id in {h.id for h in lib.search("tag:red", limit=10)}
    # a stricter run replaces the earlier classify tags of these labels
    report2, _ = lib.classify(["red", "blue", "green"], templates=["{label}"], store_tags=True,
                              min_score=0.999)  # the Python API's wrapper
    rows = lib.store.read("SELECT count(*) FROM tags WHERE source = 'classify'")[0][0]
    assert rows == report2.tags < report.tags
    assert lib.store.read("SELECT source FROM tags WHERE image_id = ? AND tag = 'blue'", (red_id,))[0][0] == "user"
