"""The CLI as a user runs it: in a subprocess, on generated folders, with real models (the built-in one and a tiny
random CLIP). Includes the kill-and-resume check: SIGKILL mid-run, rerun, compare with a clean index."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from broken_images import make_broken_images
from cli_helpers import PICSEEK, cli_env, kill_when, run
from conftest import make_folder
from tiny_models import make_tiny_clip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-env")
    return cli_env(base)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def stored(library: Path) -> dict[str, np.ndarray]:
    conn = sqlite3.connect(library / "picseek.db")
    rows = conn.execute("SELECT i.path, v.vec FROM images i JOIN vectors v ON v.image_id = i.id "
                        "WHERE v.space = 'main'").fetchall()
    return {p: np.frombuffer(v, dtype=np.float16).astype(np.float32) for p, v in rows}


def test_help_lists_every_command(env):
    out = run("--help", env=env).stdout
    for cmd in ("index", "search", "status", "models"):
        assert cmd in out


def test_models_lists_builtin_as_offline(env):
    rows = json.loads(run("models", "--json", env=env).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["builtin"]["available_offline"] is True
    assert by_name["clip-vit-b-32"]["backend"] == "onnx" and by_name["clip-vit-b-32-hf"]["backend"] == "hf"
    assert "clip-vit-b-32-onnx" not in by_name  # an alias: it resolves, it is not listed


def test_index_search_status_with_tiny_clip(tmp_path, env, tiny_clip):
    photos = tmp_path / "photos"
    make_folder(photos, 6)
    make_broken_images(photos / "junk")
    lib = tmp_path / "lib"
    out = run("--library", lib, "index", photos, "--model", tiny_clip, "--workers", "1", env=env)
    assert "errors" in out.stdout and "Indexed" in out.stdout
    hits = json.loads(run("-L", lib, "search", photos / "img_002.jpg", "--limit", "3", "--json", env=env).stdout)
    assert hits[0]["path"] == str(photos / "img_002.jpg") and hits[0]["score"] > 0.99
    assert set(hits[0]) >= {"id", "path", "score", "width", "height", "taken_at"}
    paths = run("-L", lib, "search", "a red car", "--paths", "-n", "4", env=env).stdout.splitlines()
    assert len(paths) == 4 and all(Path(p).is_file() for p in paths)
    table = run("-L", lib, "search", "a red car", "-n", "2", env=env).stdout.splitlines()
    assert table[0].split() == ["rank", "score", "via", "path"] and len(table) == 3
    status = json.loads(run("-L", lib, "status", "--json", "--errors", env=env).stdout)
    assert status["images"] > 6 and status["errors"] == len(status["error_list"]) > 0
    assert status["last_run"]["status"] == "completed"
    text = run("-L", lib, "status", "--errors", env=env).stdout
    assert "empty file" in text or "0 bytes" in text


def test_status_of_a_library_whose_first_index_failed_names_no_model(tmp_path, env):
    """A first index that fails before embedding (here: a model that cannot load) leaves no model recorded; status
    says so instead of printing None."""
    lib = tmp_path / "lib"
    make_folder(tmp_path / "photos", 1)
    failed = run("-L", lib, "index", tmp_path / "photos", "--model", tmp_path / "no-such-model", env=env, check=False)
    assert failed.returncode != 0
    out = run("-L", lib, "status", env=env).stdout
    assert "None" not in out and "model:    none yet (chosen by the first index run that embeds images: " in out
    assert f"-L {lib} index FOLDER" in out or f"--library {lib} index FOLDER" in out


@pytest.mark.parametrize("args, message", [
    (["search", ""], "empty query"),
    (["search", "./no/such/photo.jpg"], "not found"),
    (["index", "--model", "no-such-model", "{photos}"], "unknown model"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, env, tiny_clip, args, message):
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    lib = tmp_path / "lib"
    run("-L", lib, "index", photos, "--model", tiny_clip, "--workers", "0", env=env)
    proc = run("-L", lib, *[a.format(photos=photos) for a in args], env=env, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_missing_library_is_a_clear_error(tmp_path, env):
    proc = run("-L", tmp_path / "none", "search", "cat", env=env, check=False)
    assert proc.returncode != 0 and "no picseek library" in proc.stderr and "Traceback" not in proc.stderr


def test_other_model_on_existing_library_is_refused(tmp_path, env, tiny_clip):
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    lib = tmp_path / "lib"
    run("-L", lib, "index", photos, "--model", tiny_clip, "--workers", "0", env=env)
    proc = run("-L", lib, "index", photos, "--model", "builtin", env=env, check=False)
    assert proc.returncode != 0 and "--rebuild" in proc.stderr and "Traceback" not in proc.stderr


def test_killed_run_resumes_without_duplicates_or_loss(tmp_path, env, tiny_clip):
    photos = tmp_path / "photos"
    make_folder(photos, 120)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(PICSEEK + ["-L", str(killed), "index", str(photos), "--model", str(tiny_clip),
                                       "--workers", "1", "--batch-size", "4"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, killed / "picseek.db", "SELECT count(*) FROM images", 8)
    partial = stored(killed)
    assert 0 < len(partial) < 120
    run("-L", killed, "index", photos, env=env)  # resumes with the recorded model
    run("-L", clean, "index", photos, "--model", tiny_clip, "--workers", "0", env=env)
    a, b = stored(killed), stored(clean)
    assert sorted(a) == sorted(b) and len(a) == 120
    for path in a:
        assert float(a[path] @ b[path]) > 0.999
    conn = sqlite3.connect(killed / "picseek.db")
    assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == 120
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture(scope="module")
def sample_photos(tmp_path_factory):
    """Real photos that ship with scikit-image, saved as JPEGs, plus a recompressed crop of one of them."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("sample-photos")
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):
        arr = getattr(skimage.data, name)()
        Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).save(folder / f"{name}.jpg", quality=92)
    Image.fromarray(skimage.data.stereo_motorcycle()[0]).save(folder / "motorcycle.jpg", quality=92)
    query = tmp_path_factory.mktemp("query") / "coffee-crop.jpg"
    im = Image.open(folder / "coffee.jpg")
    im.crop((20, 10, im.width - 30, im.height - 20)).resize((300, 190)).save(query, quality=60)
    return folder, query


def test_builtin_model_by_default_offline_finds_real_photos(tmp_path, env, sample_photos):
    folder, query = sample_photos
    lib = tmp_path / "lib"
    proc = run("-L", lib, "index", folder, env=env)  # no --model: auto -> builtin when offline, with one line
    assert "built-in model" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(run("-L", lib, "status", "--json", env=env).stdout)["model"] == "builtin"
    for text, expected in [("a cat", "chelsea.jpg"), ("a cup of coffee", "coffee.jpg"), ("a rocket", "rocket.jpg"),
                           ("a motorcycle", "motorcycle.jpg")]:
        first = run("-L", lib, "search", text, "--paths", "-n", "1", env=env).stdout.strip()
        assert Path(first).name == expected, (text, first)
    first = run("-L", lib, "search", query, "--paths", "-n", "1", env=env).stdout.strip()
    assert Path(first).name == "coffee.jpg"


def test_global_options_after_the_command_and_hints_that_repeat_them(tmp_path, env):
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    lib = tmp_path / "my lib"
    missing = run("search", "a cat", "--library", lib, env=env, check=False)
    assert missing.returncode == 3 and f"picseek --library '{lib}' index FOLDER" in missing.stderr, missing.stderr
    run("index", photos, "--library", lib, "--model", "builtin", "-q", env=env)
    hits = json.loads(run("search", "a photo", "--json", "-L", lib, env=env).stdout)
    assert len(hits) == 2
    status = json.loads(run("status", "--json", "--library", lib, env=env).stdout)
    assert status["images"] == 2 and status["library"] == str(lib)
    later_wins = json.loads(run("-L", tmp_path / "other", "status", "--json", "-L", lib, env=env).stdout)
    assert later_wins["library"] == str(lib)
    tags = run("tag", "list", "--library", lib, env=env, check=False)
    assert tags.returncode == 1 and tags.stdout.startswith("No tags yet")  # the library's own (nothing found)


def _in_a_terminal(args: list, env: dict) -> bytes:
    """What the CLI writes when its stdout is a terminal (a pseudo-terminal; stderr stays a pipe)."""
    import pty
    import subprocess

    leader, follower = pty.openpty()
    proc = subprocess.Popen(PICSEEK + [str(a) for a in args], stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read()
    return out


def test_preview_draws_thumbnails_in_a_terminal_and_never_into_a_pipe(tmp_path, env):
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    lib = tmp_path / "lib"
    run("-L", lib, "index", photos, "--model", "builtin", "-q", env=env)
    kitty = dict(env, TERM="xterm-kitty")
    shown = _in_a_terminal(["-L", lib, "search", "a photo", "--preview"], kitty)
    assert shown.count(b"\x1b_Ga=T,f=100") == 2 and b"img_000.jpg" in shown
    iterm = _in_a_terminal(["-L", lib, "search", "a photo", "--preview"], dict(env, TERM_PROGRAM="iTerm.app"))
    assert iterm.count(b"\x1b]1337;File=inline=1") == 2
    plain = _in_a_terminal(["-L", lib, "search", "a photo", "--preview"], dict(env, TERM="xterm-256color"))
    assert b"\x1b_G" not in plain and b"\x1b]1337" not in plain and b"img_000.jpg" in plain  # an unknown terminal
    piped = run("-L", lib, "search", "a photo", "--preview", "kitty", env=kitty)
    assert "\x1b" not in piped.stdout and "img_000.jpg" in piped.stdout
