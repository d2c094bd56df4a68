"""The CLI on a hostile machine (issue 13), as a user runs it (a subprocess, the built-in model): a run killed with
SIGKILL leaves no process behind and shows as interrupted until the next run; a full, read-only or vanished library
disk is one line on stderr (exit 3), and the library stays intact for the run after it. The disks are real: small
tmpfs mounts and read-only bind mounts (root; without it these tests skip, or fail under PICSEEK_TEST_STRICT)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import PICSEEK, cli_env, run
from needs import need_mount

N = 40


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return cli_env(tmp_path_factory.mktemp("disk-env"))  # one cache: the built-in model's class vectors made once


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(N):
        pixels = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:03d}.jpg", quality=85)
    return folder


def few_photos(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    for colour in ("red", "green", "blue")[:n]:
        Image.new("RGB", (64, 48), colour).save(folder / f"{colour}.jpg")
    return folder


@pytest.fixture
def mounted(tmp_path):
    """mount(ARGS..., target) -> target: a mount that is undone after the test."""
    targets = []

    def mount(*args: str) -> Path:
        target = tmp_path / f"mnt{len(targets)}"
        target.mkdir()
        need_mount(*args, str(target))
        targets.append(target)
        return target

    yield mount
    for target in reversed(targets):
        subprocess.run(["umount", "-l", str(target)], check=False)


def images_in(library: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(library / "picseek.db", timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def stored(library: Path) -> dict[str, np.ndarray]:
    with contextlib.closing(sqlite3.connect(library / "picseek.db")) as conn:
        rows = conn.execute("SELECT i.path, v.space, v.vec FROM images i JOIN vectors v ON v.image_id = i.id")
        return {(p, s): np.frombuffer(v, dtype=np.float16).astype(np.float32) for p, s, v in rows}


def intact(library: Path) -> bool:
    with contextlib.closing(sqlite3.connect(library / "picseek.db")) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def same_index(a: Path, b: Path) -> None:
    va, vb = stored(a), stored(b)
    assert sorted(va) == sorted(vb) and len({p for p, _ in va}) == N
    for key in va:
        assert float(va[key] @ vb[key]) / (np.linalg.norm(va[key]) * np.linalg.norm(vb[key])) > 0.999, key


def one_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed with exit 3 (cannot go on) and stderr is one line, no traceback, with every one of `words`."""
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("picseek: error: ") and all(w in proc.stderr for w in words), proc.stderr
    return proc.stderr


def in_session(sid: int) -> list[str]:
    """Live processes (zombies aside) of session `sid`, as 'pid: command line'."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
        if int(session) == sid and state not in ("Z", "X"):
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_a_killed_run_leaves_no_process_and_shows_as_interrupted(tmp_path, env, photos):
    lib = tmp_path / "lib"
    proc = subprocess.Popen(PICSEEK + ["-L", str(lib), "index", str(photos), "--model", "builtin", "--workers", "2",
                                       "--batch-size", "4"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and images_in(lib) < 8:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make the folder bigger"
        helpers = [p for p in in_session(proc.pid) if not p.startswith(f"{proc.pid}:")]
        assert helpers, "no decode workers to check: the run should have started them by now"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 5
        while (left := in_session(proc.pid)) and time.time() < deadline:
            time.sleep(0.05)
        assert not left, f"alive after their run was killed (it had: {helpers})"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # (what a failure left: this test's own process group)
    assert 0 < images_in(lib) < N
    assert json.loads(run("-L", lib, "status", "--json", env=env).stdout)["last_run"]["status"] == "interrupted"
    assert ", interrupted, " in run("-L", lib, "status", env=env).stdout
    run("-L", lib, "index", photos, env=env)
    status = json.loads(run("-L", lib, "status", "--json", env=env).stdout)
    assert status["images"] == N and status["last_run"]["status"] == "completed"
    with contextlib.closing(sqlite3.connect(lib / "picseek.db")) as conn:
        assert [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY id")] == ["interrupted", "completed"]


def test_a_full_disk_is_one_line_and_after_freeing_space_the_run_completes(tmp_path, env, photos, mounted):
    disk = mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs")
    lib = disk / "lib"
    st = os.statvfs(disk)
    ballast = disk / "ballast"
    ballast.write_bytes(bytes(st.f_bavail * st.f_frsize - 512 * 1024))  # room for the schema and a few batches
    proc = run("-q", "-L", lib, "index", photos, "--model", "builtin", "--batch-size", "4", env=env, check=False)
    one_error_line(proc, f"the disk holding library {lib} is full (writing picseek.db): free some space and run the "
                   "same command again; nothing indexed so far is lost")
    committed = stored(lib)
    assert 0 < len({path for path, _ in committed}) < N and intact(lib)
    ballast.unlink()  # free some space, as the message asks
    run("-L", lib, "index", photos, env=env)
    run("-L", tmp_path / "clean", "index", photos, "--model", "builtin", "--batch-size", "4", env=env)
    assert intact(lib)
    same_index(lib, tmp_path / "clean")
    after = stored(lib)
    assert all(np.array_equal(after[k], v) for k, v in committed.items())  # what was committed stayed


def test_a_read_only_library_is_one_line_and_stays_intact(tmp_path, env, mounted):
    lib = tmp_path / "lib"
    run("-L", lib, "index", few_photos(tmp_path / "photos", 2), "--model", "builtin", env=env)
    before = stored(lib)
    ro = mounted("--bind", str(lib))
    need_mount("-o", "remount,bind,ro", str(ro))
    more = few_photos(tmp_path / "more", 1)
    one_error_line(run("-L", ro, "index", more, env=env, check=False), f"library {ro} is on a read-only file system",
                   "remount it read-write")
    # reading needs no write: status, search and browse work on the read-only library
    assert json.loads(run("-L", ro, "status", "--json", env=env).stdout)["images"] == 2
    hits = json.loads(run("-L", ro, "search", "a red square", "--json", env=env).stdout)
    assert len(hits) == 2 and all(h["path"].startswith(str(tmp_path / "photos")) for h in hits)
    subprocess.run(["umount", str(ro)], check=True)
    assert intact(lib) and stored(lib).keys() == before.keys()
    run("-L", lib, "index", more, env=env)  # the same library, writable again
    assert json.loads(run("-L", lib, "status", "--json", env=env).stdout)["images"] == 3


def test_a_library_whose_disk_vanished_is_one_line(tmp_path, env, mounted):
    disk = mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs")
    lib = disk / "lib"
    run("-L", lib, "index", few_photos(tmp_path / "photos"), "--model", "builtin", env=env)
    subprocess.run(["umount", str(disk)], check=True)  # the disk is gone; its mount point stays, empty
    for args in (["status"], ["search", "a red square"]):
        one_error_line(run("-L", lib, *args, env=env, check=False), f"no picseek library at {lib}")
