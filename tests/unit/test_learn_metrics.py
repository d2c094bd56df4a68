"""Retrieval and zero-shot metrics against values computed by hand, and the dataset readers they run on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from picseek.errors import UsageError
from picseek.learn import evaluate as ev
from picseek.learn.data import load_dataset, split

from conftest import draw_photo

# captions x images. Caption j belongs to image j.
SIM = np.array([[0.9, 0.1, 0.3],   # caption 0: image 0 best -> rank 1
                [0.8, 0.5, 0.2],   # caption 1: image 0 (0.8) beats image 1 (0.5) -> rank 2
                [0.4, 0.7, 0.1]])  # caption 2: images 1 (0.7) and 0 (0.4) beat image 2 (0.1) -> rank 3


def test_text_to_image_ranks_by_hand():
    assert ev.ranks_text_to_image(SIM, np.arange(3)).tolist() == [1, 2, 3]
    m = ev.retrieval_metrics(SIM, np.arange(3), ks=(1, 2))["text_to_image"]
    assert m == {"r@1": pytest.approx(1 / 3, abs=1e-6), "r@2": pytest.approx(2 / 3, abs=1e-6), "mean_rank": 2.0,
                 "median_rank": 2.0}


def test_image_to_text_ranks_by_hand():
    # image 0: its caption scores 0.9, the best in column 0 -> 1. image 1: own 0.5; caption 2 scores 0.7 -> 2.
    # image 2: own 0.1; captions 0 (0.3) and 1 (0.2) are higher -> 3.
    assert ev.ranks_image_to_text(SIM, np.arange(3)).tolist() == [1, 2, 3]


def test_ties_count_against_the_model():
    flat = np.full((3, 3), 0.5)  # a model that scores everything alike gets the worst rank, not a perfect one
    assert ev.ranks_text_to_image(flat, np.arange(3)).tolist() == [3, 3, 3]
    assert ev.ranks_image_to_text(flat, np.arange(3)).tolist() == [3, 3, 3]
    assert ev.class_ranks(flat, np.array([0, 1, 2])).tolist() == [3, 3, 3]


def test_several_captions_per_image():
    # 4 captions, 2 images: captions 0, 1 -> image 0; captions 2, 3 -> image 1
    sim = np.array([[0.2, 0.6],    # caption 0 prefers image 1: t2i rank 2
                    [0.9, 0.1],    # caption 1: rank 1
                    [0.3, 0.4],    # caption 2: rank 1
                    [0.8, 0.35]])  # caption 3 prefers image 0: rank 2
    owner = np.array([0, 0, 1, 1])
    assert ev.ranks_text_to_image(sim, owner).tolist() == [2, 1, 1, 2]
    # image 0: best own caption 0.9 (caption 1); no other image's caption reaches 0.9 -> 1.
    # image 1: best own caption 0.4 (caption 2); caption 0 of image 0 scores 0.6 -> 2 (own caption 3 never counts)
    assert ev.ranks_image_to_text(sim, owner).tolist() == [1, 2]


def test_zero_shot_accuracy_by_hand():
    sim = np.array([[0.9, 0.1, 0.2],   # right class 0: top-1
                    [0.5, 0.3, 0.4],   # right class 1: third -> top-2 miss, top-3 hit
                    [0.1, 0.6, 0.5]])  # right class 2: second
    assert ev.class_ranks(sim, np.array([0, 1, 2])).tolist() == [1, 3, 2]
    assert ev.accuracy_metrics(sim, np.array([0, 1, 2]), ks=(1, 2, 3)) == {
        "top1": pytest.approx(1 / 3, abs=1e-6), "top2": pytest.approx(2 / 3, abs=1e-6), "top3": 1.0}


def test_caption_csv_karpathy_and_class_folders(tmp_path):
    for name, colour in (("a.jpg", "red"), ("b.jpg", "blue")):
        draw_photo(colour, size=(64, 48)).save(tmp_path / name)
    (tmp_path / "caps.csv").write_text("file,text\na.jpg,a red thing\nb.jpg,a blue thing\na.jpg,red again\n,x\n")
    ds = load_dataset(tmp_path / "caps.csv")
    assert [p.rsplit("/", 1)[1] for p in ds.images] == ["a.jpg", "b.jpg"]
    assert ds.captions == ["a red thing", "a blue thing", "red again"] and ds.caption_image.tolist() == [0, 1, 0]
    assert len(ds.skipped) == 1
    doc = {"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": "one"}, {"raw": "two"}]},
                      {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "three"}]}]}
    (tmp_path / "k.json").write_text(json.dumps(doc))
    k = load_dataset(tmp_path / "k.json")  # the test split by default
    assert k.captions == ["one", "two"] and k.caption_image.tolist() == [0, 0] and len(k.images) == 1
    assert len(load_dataset(tmp_path / "k.json", split_name="train").images) == 1
    for cls in ("tabby_cat", "sports-car"):
        (tmp_path / "classes" / cls).mkdir(parents=True)
        draw_photo("green").save(tmp_path / "classes" / cls / "x.png")
    c = load_dataset(tmp_path / "classes", template="a photo of a {class}")
    assert c.classes == ["sports car", "tabby cat"]
    assert c.captions == ["a photo of a sports car", "a photo of a tabby cat"]
    with pytest.raises(UsageError, match="caption column"):
        (tmp_path / "bad.csv").write_text("image,other\na.jpg,x\n")
        load_dataset(tmp_path / "bad.csv")
    with pytest.raises(UsageError, match="not found"):
        load_dataset(tmp_path / "missing.csv")


def test_split_keeps_all_captions_of_an_image_together():
    from picseek.learn.data import Dataset

    ds = Dataset([f"{i}.jpg" for i in range(10)], [f"c{j}" for j in range(20)], np.repeat(np.arange(10), 2))
    train, held = split(ds, 0.3, seed=1)
    assert len(train) == 7 and len(held) == 3 and not set(train.images) & set(held.images)
    for part in (train, held):
        assert len(part.captions) == 2 * len(part) and np.bincount(part.caption_image).tolist() == [2] * len(part)
        for cap, img in zip(part.captions, part.caption_image):
            assert int(cap[1:]) // 2 == int(part.images[img].split(".")[0])


def test_evaluate_with_a_model(tmp_path, colour_embedder):
    names = ["red", "blue", "green", "yellow"]
    for n in names:
        draw_photo(n, size=(64, 64)).save(tmp_path / f"{n}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = "".join(f"{n}.png,a {n} circle\n" for n in names) + "broken.png,nothing\n"
    (tmp_path / "caps.csv").write_text("image,caption\n" + rows)
    out = ev.evaluate(colour_embedder, load_dataset(tmp_path / "caps.csv"))
    assert out["images"] == 4 and out["unreadable"] == 1
    assert out["text_to_image"]["r@1"] == 1.0 and out["image_to_text"]["r@1"] == 1.0
