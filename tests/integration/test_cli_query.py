"""The search language, filters, tags, similar and duplicates from the command line, as a user runs them."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cli_helpers import cli_env, run
from conftest import draw_photo, make_folder
from tiny_models import make_tiny_clip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-query-env")
    return cli_env(base)


@pytest.fixture(scope="module")
def library(tmp_path_factory, env):
    """A tiny-CLIP library of 8 photos in two folders, one of them with a space in its name."""
    base = tmp_path_factory.mktemp("cli-query")
    make_folder(base / "photos" / "trips", 5)
    make_folder(base / "photos" / "my home", 3, "home")
    lib = base / "lib"
    run("-L", lib, "index", base / "photos", "--model", make_tiny_clip(base / "tiny-clip"), "--workers", "0",
        env=env)
    conn = sqlite3.connect(lib / "picseek.db")
    with conn:
        conn.execute("UPDATE images SET taken_at = '2021-07-0' || (substr(path, -5, 1) + 1) || 'T10:00:00' "
                     "WHERE path LIKE '%trips%'")  # img_00N.jpg: July N+1
    conn.close()
    return lib, base / "photos"


def ids_by_name(lib: Path) -> dict[str, int]:
    conn = sqlite3.connect(lib / "picseek.db")
    return {Path(p).name: i for i, p in conn.execute("SELECT id, path FROM images")}


def test_search_language_filters_and_json(library, env):
    lib, photos = library
    image = photos / "my home" / "home_001.jpg"
    # the shell passes: <path with a space> + "in winter" - people
    hits = json.loads(run("-L", lib, "search", image, "+", "in winter", "-", "people", "--json", env=env).stdout)
    assert len(hits) == 8 and {"fields", "tags", "id", "score"} <= set(hits[0])
    only = json.loads(run("-L", lib, "search", "a red car", "--where", "folder=trips", "--where",
                          "taken>=2021-07-03", "--sort", "date", "--json", env=env).stdout)
    dates = [h["taken_at"] for h in only]
    assert dates == sorted(dates) and all("trips" in h["path"] for h in only) and len(only) == 3
    assert all(d >= "2021-07-03" for d in dates)
    cut = json.loads(run("-L", lib, "search", "a red car", "--adaptive", "--no-keywords", "--json", env=env).stdout)
    assert 1 <= len(cut) < 8


def test_tags_metadata_table_and_tag_filters(library, env):
    lib, photos = library
    names = ids_by_name(lib)
    out = run("-L", lib, "tag", "add", names["img_001.jpg"], "Beach", "sunset", env=env).stdout
    assert "beach, sunset" in out
    run("-L", lib, "tag", "add", photos / "trips" / "img_002.jpg", "beach", env=env)
    assert json.loads(run("-L", lib, "tag", "list", "--json", env=env).stdout) == {"beach": 2, "sunset": 1}
    tagged = run("-L", lib, "search", "tag:beach", "--paths", env=env).stdout.split()
    assert sorted(Path(p).name for p in tagged) == ["img_001.jpg", "img_002.jpg"]
    both = run("-L", lib, "search", "tag:beach tag:sunset", "--paths", env=env).stdout.split()
    assert [Path(p).name for p in both] == ["img_001.jpg"]
    conn = sqlite3.connect(lib / "picseek.db")
    with conn:
        conn.execute("INSERT INTO fields VALUES (?, 'description', 'A dog on the beach', NULL, 'import')",
                     (names["img_002.jpg"],))
        conn.execute("INSERT INTO fields VALUES (?, 'photographer', 'Alec Weir', NULL, 'import')",
                     (names["img_002.jpg"],))
    conn.close()
    table = run("-L", lib, "search", "dog", "--where", "photographer=Alec Weir", env=env).stdout.splitlines()
    assert table[0].split() == ["rank", "score", "via", "path"]
    assert table[1].split()[2] == "vector+keyword"  # "dog" is in its description too
    assert "A dog on the beach" in table[2] and "by Alec Weir" in table[2] and "#beach" in table[2]
    removed = run("-L", lib, "tag", "remove", names["img_001.jpg"], "sunset", "nope", env=env).stdout
    assert "Removed 1 tag from" in removed


def test_similar_and_duplicates(library, env, tmp_path):
    lib, photos = library
    names = ids_by_name(lib)
    hits = json.loads(run("-L", lib, "similar", names["img_003.jpg"], "-n", "3", "--json", env=env).stdout)
    assert len(hits) == 3 and names["img_003.jpg"] not in [h["id"] for h in hits]
    groups = json.loads(run("-L", lib, "duplicates", "--threshold", "0.999", "--json", env=env).stdout)
    # make_folder draws the same picture for the same index in both folders
    assert sorted(sorted(Path(h["path"]).name for h in g) for g in groups) == [
        ["home_000.jpg", "img_000.jpg"], ["home_001.jpg", "img_001.jpg"], ["home_002.jpg", "img_002.jpg"]]
    text = run("-L", lib, "duplicates", "--threshold", "0.999", env=env).stdout
    assert "group 1 (2 images)" in text and "3 groups, 6 images." in text


@pytest.mark.parametrize("args, message, code", [
    (["search", 'a "dog'], "unbalanced", 2),
    (["search", "cats", "+"], "needs a term after it", 2),
    (["search", '2x:"at night"'], "not a number", 2),
    (["search", "id:99999"], "not an indexed image", 2),
    (["search", "./nope.jpg"], "not found", 2),
    (["search", "cat", "--where", "camera<canon"], "camera is text", 2),
    (["search", "cat", "--where", "lens~zeiss"], "no image has lens~zeiss", 1),
    (["search", "tag:nothing"], "no image is tagged 'nothing'", 1),
    (["search", "cat", "--where", "width>=1", "--where", "nosuch=1"], "unknown key 'nosuch'", 2),
    (["tag", "add", "99999", "x"], "not an indexed image", 2),
    (["similar", "/no/such.jpg"], "neither an image id", 2),
])
def test_errors_are_one_line(library, env, args, message, code):
    lib, _ = library
    proc = run("-L", lib, *args, env=env, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_tag_without_labels_or_subcommand_is_a_usage_error(library, env):
    proc = run("-L", library[0], "tag", env=env, check=False)
    assert proc.returncode == 2 and "give --labels FILE, or a subcommand" in proc.stderr


@pytest.fixture(scope="module")
def sample_photos(tmp_path_factory):
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("samples")
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg", quality=92)
    Image.fromarray(skimage.data.stereo_motorcycle()[0]).save(folder / "motorcycle.jpg", quality=92)
    draw_photo("green", seed=3).save(folder / "green.jpg")
    return folder


def test_zero_shot_tags_with_the_builtin_model(tmp_path, env, sample_photos):
    lib = tmp_path / "lib"
    run("-L", lib, "index", sample_photos, "--model", "builtin", env=env)
    labels = tmp_path / "labels.txt"
    labels.write_text("# what to look for\ncat\ncup of coffee\nrocket\nmotorcycle\nguitar\n")
    report = json.loads(run("-L", lib, "tag", "--labels", labels, "--json", env=env).stdout)
    assert report["threshold"] == 0.45 and report["images"] == 5 and report["per_label"]["guitar"] == 0
    conn = sqlite3.connect(lib / "picseek.db")
    got = {(Path(p).name, t) for p, t in conn.execute(
        "SELECT i.path, t.tag FROM tags t JOIN images i ON i.id = t.image_id WHERE t.source = 'auto'")}
    assert {("chelsea.jpg", "cat"), ("coffee.jpg", "cup of coffee"), ("rocket.jpg", "rocket"),
            ("motorcycle.jpg", "motorcycle")} == got
    first = run("-L", lib, "search", "tag:cat", "--paths", env=env).stdout.split()
    assert [Path(p).name for p in first] == ["chelsea.jpg"]
