"""`picseek watch`, `picseek search --here` and `picseek serve --watch` as a user runs them, with a real watcher on
temporary folders. The CLI subprocesses get the test colour model as an installed plugin would bring it (an entry
point in a dist-info folder on PYTHONPATH), so nothing is downloaded and no real model loads."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import PICSEEK, cli_env, run
from conftest import draw_photo, make_folder

TESTS = Path(__file__).resolve().parents[1]
MODEL = "testcolour:plain"
PLUGIN = '''
from conftest import ColourEmbedder
from picseek.models.base import Backend, ModelSpec


def _spec(source):
    return ModelSpec(f"testcolour:{source}", "testcolour", source, "test colours", dim=8)


def _load(spec, device="cpu", precision=None):
    return ColourEmbedder(spec.name)


BACKEND = Backend("testcolour", _load, spec=_spec)
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("watch-cli")
    plugin = base / "plugin"
    (plugin / "picseek_testcolour-1.0.dist-info").mkdir(parents=True)
    (plugin / "picseek_testcolour-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: picseek-testcolour\nVersion: 1.0\n")
    (plugin / "picseek_testcolour-1.0.dist-info" / "entry_points.txt").write_text(
        "[picseek.backends]\ntestcolour = picseek_testcolour:BACKEND\n")
    (plugin / "picseek_testcolour.py").write_text(PLUGIN)
    env = cli_env(base)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin), str(TESTS), env.get("PYTHONPATH", "")])
    return env


class Lines:
    """A stream's lines, read in a thread, waited for with a deadline."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {timeout} s: {self.lines}")


def _watch(env, lib, photos, *extra):
    proc = subprocess.Popen(PICSEEK + ["-L", str(lib), "watch", str(photos), "--model", MODEL, "--debounce", "0.2",
                                       "--rescan", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    return proc, Lines(proc.stdout), Lines(proc.stderr)


def test_watch_prints_a_line_per_batch_and_stops_on_ctrl_c_with_130(tmp_path, env):
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    proc, out, err = _watch(env, tmp_path / "lib", photos)
    try:
        assert "2 added" in out.wait_for("Indexed 2 files")
        err.wait_for("watching")
        draw_photo("blue", seed=5).save(photos / "new.jpg")
        line = out.wait_for("1 added")
        assert "events:" in line and str(photos) in line
        (photos / "img_000.jpg").unlink()
        out.wait_for("1 removed")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    err.thread.join(5)
    assert "stopped watching" in err.lines[-1] and not any("Traceback" in line for line in err.lines)
    status = json.loads(run("-L", tmp_path / "lib", "status", "--json", env=env).stdout)
    assert status["images"] == 2 and status["model"] == MODEL


def test_watch_is_quiet_with_q(tmp_path, env):
    photos = tmp_path / "photos"
    make_folder(photos, 1)
    proc, out, err = _watch(env, tmp_path / "lib", photos, "-q")
    try:
        deadline = time.monotonic() + 30
        while run("-L", tmp_path / "lib", "status", "--json", env=env, check=False).returncode != 0 or \
                json.loads(run("-L", tmp_path / "lib", "status", "--json", env=env).stdout)["images"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        draw_photo("blue", seed=5).save(photos / "new.jpg")
        while json.loads(run("-L", tmp_path / "lib", "status", "--json", env=env).stdout)["images"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    out.thread.join(5)
    assert out.lines == []


def test_search_here_indexes_the_current_folder_then_searches_only_it(tmp_path, env):
    photos, other = tmp_path / "photos", tmp_path / "other"
    make_folder(photos / "mine", 4)
    make_folder(other, 4, prefix="elsewhere")
    lib = tmp_path / "lib"
    run("-L", lib, "index", other, "--model", MODEL, "--workers", "0", env=env)
    first = run("-L", lib, "search", "red", "--here", "--json", cwd=photos, env=env)
    hits = json.loads(first.stdout)
    assert hits and all(h["path"].startswith(str(photos) + os.sep) for h in hits)
    assert "indexed" in first.stderr and "4 added" in first.stderr
    again = run("-L", lib, "search", "red", "--here", "--paths", cwd=photos, env=env)
    assert again.stderr == "" and again.stdout.splitlines() and "elsewhere" not in again.stdout
    status = json.loads(run("-L", lib, "status", "--json", env=env).stdout)
    assert status["images"] == 8  # the other folder is still in the library


def test_search_here_uses_the_default_library_without_l(tmp_path, env):
    photos = tmp_path / "photos"
    make_folder(photos, 2)
    res = run("search", "red", "--here", "--model", MODEL, "--json", cwd=photos, env=env)
    assert len(json.loads(res.stdout)) == 2
    assert Path(env["PICSEEK_LIBRARY"], "picseek.db").exists()


def test_watch_refuses_urls_and_missing_folders(tmp_path, env):
    missing = run("-L", tmp_path / "lib", "watch", tmp_path / "missing", env=env, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
