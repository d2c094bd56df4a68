"""classify, train and eval from the command line, as a user runs them."""
from __future__ import annotations

import json

import pytest

from cli_helpers import cli_env, run
from conftest import draw_photo, make_folder
from tiny_models import make_tiny_clip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-learn-env")
    return cli_env(base)


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-learn")
    names = ["red", "green", "blue", "yellow", "purple", "orange"]
    lines = ["image,caption"]
    for i, colour in enumerate(names * 2):
        shape = "circle" if i < 6 else "square"
        draw_photo(colour, shape, size=(64, 48), seed=i).save(base / f"{i:02d}.png")
        lines.append(f"{i:02d}.png,a {colour} {shape}")
    (base / "captions.csv").write_text("\n".join(lines) + "\n")
    return base


def test_classify_images_and_library(tmp_path, env):
    photos = tmp_path / "photos"
    make_folder(photos, 4)
    tiny = make_tiny_clip(tmp_path / "tiny")
    out = run("classify", photos / "img_000.jpg", photos / "img_001.jpg", "--labels", "cat,dog,car", "--model", tiny,
              "--json", env=env)
    preds = json.loads(out.stdout)["predictions"]
    assert len(preds) == 2 and all(len(p["labels"]) == 3 for p in preds)
    assert all(abs(sum(x["probability"] for x in p["labels"]) - 1) < 1e-3 for p in preds)
    text = run("classify", photos / "img_000.jpg", tmp_path / "missing.jpg", "--labels", "cat,dog", "--model", tiny,
               "--top", "1", env=env, check=False)
    assert text.returncode == 2 and "img_000.jpg: " in text.stdout and "missing.jpg: error" in text.stderr
    lib = tmp_path / "lib"
    run("-L", lib, "index", photos, "--model", tiny, "--workers", "0", env=env)
    (tmp_path / "labels.txt").write_text("cat\ndog\ncar\n")
    out = run("classify", "--all", "--labels-file", tmp_path / "labels.txt", "--store-tags",
              "--min-score", "0.3", "--library", lib, env=env)  # (the global option after the command, too)
    assert "Tagged" in out.stdout and out.stdout.count("img_0") == 4
    tags = json.loads(run("-L", lib, "tag", "list", "--json", env=env).stdout)
    assert tags and set(tags) <= {"cat", "dog", "car"}
    label = next(iter(tags))
    hits = json.loads(run("-L", lib, "search", f"tag:{label}", "--json", env=env).stdout)
    assert len(hits) == tags[label]
    bad = run("classify", "--labels", "cat", "--all", env=env, check=False)
    assert bad.returncode == 2 and "at least two" in bad.stderr and "Traceback" not in bad.stderr


def test_train_then_eval_side_by_side(tmp_path, env, captions):
    tiny = make_tiny_clip(tmp_path / "tiny")
    out = tmp_path / "mine"
    res = run("train", "--data", captions / "captions.csv", "--out", out, "--from", tiny, "--epochs", "2",
              "--batch-size", "4", "--holdout", "0.25", env=env)
    assert "Trained on 9 images (3 held out" in res.stdout and "epoch 2: loss" in res.stderr
    assert (out / "config.json").is_file() and (out / "checkpoint.pt").is_file()
    again = json.loads(run("train", "--data", captions / "captions.csv", "--out", out, "--from", tiny, "--epochs",
                           "3", "--batch-size", "4", "--holdout", "0.25", "--resume", "--json", env=env).stdout)
    assert [e["epoch"] for e in again["epochs"]] == [1, 2, 3]
    table = run("eval", "--data", captions / "captions.csv", "--model", tiny, "--model", out, env=env).stdout
    assert "12 images, 12 captions" in table and "text->image r@1" in table and "image->text mean_rank" in table
    result = json.loads(run("eval", "--data", captions / "captions.csv", "--model", tiny, "--model", "builtin",
                            "--json", env=env).stdout)["results"]
    assert [r["model"] for r in result] == [str(tiny), "builtin"]
    assert all(0 <= r["text_to_image"]["r@5"] <= 1 and r["image_to_text"]["mean_rank"] >= 1 for r in result)
    bad = run("train", "--data", captions / "captions.csv", "--out", tmp_path / "x", env=env, check=False)
    assert bad.returncode == 2 and "--arch tiny" in bad.stderr


def test_eval_class_folders_zero_shot(tmp_path, env):
    for cls, colour in (("red_things", "red"), ("blue_things", "blue"), ("green_things", "green")):
        for i in range(2):
            (tmp_path / "classes" / cls).mkdir(parents=True, exist_ok=True)
            draw_photo(colour, seed=i).save(tmp_path / "classes" / cls / f"{i}.jpg")
    res = json.loads(run("eval", "--data", tmp_path / "classes", "--model", "builtin", "--json", env=env).stdout)
    r = res["results"][0]
    assert r["classes"] == 3 and r["images"] == 6 and set(r["zero_shot"]) == {"top1", "top5"}
    assert r["zero_shot"]["top5"] == 1.0  # 3 classes: always within the top 5
